"""Run one command and measure it: wall time, peak RSS of its process tree, exit code.

RSS is sampled every 20 ms from `/proc`: the sum of `VmRSS`
(resident pages, shared pages counted in every process) over the process
and all its descendants, which for image-syncer includes Prefect's temporary
API server (a `uvicorn` subprocess). The main process's own peak comes from
its `VmHWM` (the kernel's high-water mark, read at each sample).

`wait4`'s `ru_maxrss` is recorded but not used: Linux carries the high-water
mark of the pre-exec memory image (a fork of this ~200 MiB benchmark process)
over `execve`, so it reports at least the benchmark's own size. For the same
reason samples taken before the child has exec'd (its cmdline is still ours)
are skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measured", "TreeSampler", "kill_current", "run_measured"]

_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
_CURRENT: set[subprocess.Popen[bytes]] = set()


@dataclass
class Measured:
    """What one measured command did."""

    argv: list[str]
    returncode: int
    wall: float
    tree_rss_peak_mib: float
    main_rss_peak_mib: float
    maxrss_mib: float
    processes_peak: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    started_at: float = 0.0
    ended_at: float = 0.0


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from every thread's `children` file."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found.extend(int(p) for p in fh.read().split())
        except OSError:
            continue
    return found


def descendants(root: int) -> list[int]:
    """`root` and every process below it (best effort: processes come and go)."""
    seen, todo = [root], [root]
    while todo:
        for child in _children(todo.pop()):
            if child not in seen:
                seen.append(child)
                todo.append(child)
    return seen


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int | str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


_OWN_CMDLINE = _cmdline("self")


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Background sampler of a process tree's total RSS.

    RSS is read every `interval` for the processes already known; the tree
    itself (a walk over every thread's `children` file, hundreds of reads for
    a busy Python process) is re-discovered only every `rescan` seconds, so
    the sampler costs little CPU on the 2-core machines this runs on.
    """

    def __init__(self, pid: int, interval: float = 0.02, rescan: float = 0.25):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.rescan = rescan
        self.peak_kib = 0
        self.main_hwm_kib = 0
        self.processes_peak = 0
        self._known: list[int] = [pid]
        self._scanned_at = 0.0
        self._halt = threading.Event()

    def sample(self) -> None:
        """Take one sample now (none while the child has not exec'd yet)."""
        if _cmdline(self.pid) == _OWN_CMDLINE:
            return
        now = time.monotonic()
        if now - self._scanned_at >= self.rescan:
            self._known = descendants(self.pid)
            self._scanned_at = now
        self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in self._known))
        self.main_hwm_kib = max(self.main_hwm_kib, _hwm_kib(self.pid))
        self.processes_peak = max(self.processes_peak, len(self._known))

    def run(self) -> None:
        """Sample until stopped."""
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._halt.set()
        self.join()


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def kill_current() -> None:
    """Kill the process groups of commands still running (Ctrl-C, errors)."""
    for proc in list(_CURRENT):
        _killpg(proc)


def _tail(path: Path, limit: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-limit:]


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_prefix: Path,
    timeout: float,
) -> Measured:
    """Run `argv` in its own process group; measure it; stdout/stderr go to `log_prefix.*`.

    On timeout the whole group is killed and `timed_out` is set.
    """
    out_path, err_path = log_prefix.with_suffix(".out"), log_prefix.with_suffix(".err")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started, started_at = time.monotonic(), time.time()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        _CURRENT.add(proc)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        expired = threading.Event()

        def _expire() -> None:
            expired.set()
            _killpg(proc)

        timer = threading.Timer(timeout, _expire)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - started
        except BaseException:
            _killpg(proc)  # interrupted (Ctrl-C, SIGTERM): take the whole group down
            raise
        finally:
            timer.cancel()
            sampler.stop()
            _CURRENT.discard(proc)
        proc.returncode = os.waitstatus_to_exitcode(status)
        _killpg(proc)  # leftovers of the group (none expected)
    return Measured(
        argv=list(argv),
        returncode=proc.returncode,
        wall=wall,
        tree_rss_peak_mib=sampler.peak_kib / 1024,
        main_rss_peak_mib=sampler.main_hwm_kib / 1024,
        maxrss_mib=usage.ru_maxrss / 1024,
        processes_peak=sampler.processes_peak,
        stdout=_tail(out_path),
        stderr=_tail(err_path),
        timed_out=expired.is_set(),
        started_at=started_at,
        ended_at=started_at + wall,
    )
