"""Summarise py-spy raw (collapsed-stack) profiles of an image-syncer run.

    python bench/profile_summary.py bench/results/profile-s-cold.idle.txt [--top 25]

Input: `py-spy record --subprocesses --threads --format raw [--idle]`. Each
line is `process P:"cmd";[process C:"cmd";]thread (TID)[: name];frame;... N`.

Prints, in seconds (samples / rate):
- **phases**: wall-clock attribution of the main thread of the main process
  (record with `--idle` for this to be wall time), by the first phase rule
  whose marker appears in the stack;
- **CPU by component**: every sample of every process and thread, by the
  innermost frame that belongs to a known component (record without
  `--idle` for this to be CPU time);
- the main thread's top functions by inclusive time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sample", "components", "parse", "phases", "top_functions"]

_PROCESS = re.compile(r'^process (\d+):"(.*)"$')
_THREAD = re.compile(r"^thread \((\d+)\)")

#: (phase, markers): the first phase with a marker in the main thread's stack wins.
PHASE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("imports (module loading)", ("_find_and_load",)),
    ("after the flow: wait_until_recorded", ("wait_until_recorded",)),
    ("rule subflows (waiting for their threads)", ("_run_rules", "_run_here", "dispatch_")),
    ("flow body: other", ("sync_images (",)),
    ("temporary API server start/stop", ("SubprocessASGIServer", "start_temporary_server")),
    ("Prefect flow engine (create/track the run)", ("flow_engine.py", "run_flow")),
    ("CLI / argument parsing / config", ("flows/cli.py", "runconfig.py")),
    ("interpreter exit (atexit, threads)", ("_shutdown", "atexit")),
)

#: (component, path markers) matched against frames from the innermost outwards.
COMPONENT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hashing (hashlib/digest)", ("hashlib", "digest.py")),
    ("HTTP client (httpx/httpcore/h11/ssl/socket)", ("httpx/", "httpcore/", "h11/", "ssl.py")),
    ("SQLite / SQLAlchemy", ("sqlalchemy/", "aiosqlite/", "sqlite3/")),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("logging", ("logging/",)),
    ("Prefect server (API, events, services)", ("prefect/server/",)),
    ("web stack (uvicorn/starlette/fastapi/anyio)", ("uvicorn/", "starlette/", "fastapi/")),
    ("Prefect client/engine", ("prefect/",)),
    ("asyncio / threading / futures", ("asyncio/", "threading.py", "concurrent/", "anyio/")),
    ("syncer_core", ("syncer_core/",)),
    ("flows", ("flows/",)),
)


@dataclass(frozen=True)
class Sample:
    """One stack (outermost first) with its sample count."""

    processes: tuple[str, ...]
    thread: int | None
    frames: tuple[str, ...]
    count: int

    @property
    def main_process(self) -> bool:
        """A sample of the top-level process (not a subprocess)."""
        return len(self.processes) == 1


def _split_line(line: str) -> tuple[list[str], int] | None:
    stack, _, count = line.rstrip().rpartition(" ")
    if not stack or not count.isdigit():
        return None
    return stack.split(";"), int(count)


def parse(lines: Iterable[str]) -> list[Sample]:
    """Parse py-spy raw output."""
    samples = []
    for line in lines:
        parsed = _split_line(line)
        if parsed is None:
            continue
        parts, count = parsed
        processes, thread, frames = [], None, []
        for part in parts:
            if (m := _PROCESS.match(part)) and not frames and thread is None:
                processes.append(m.group(1))
            elif (t := _THREAD.match(part)) and thread is None:
                thread = int(t.group(1))
            else:
                frames.append(part)
        samples.append(Sample(tuple(processes), thread, tuple(frames), count))
    return samples


def _main_thread(samples: Sequence[Sample]) -> list[Sample]:
    return [
        s
        for s in samples
        if s.main_process
        and s.processes
        and s.thread is not None
        and str(s.thread) == s.processes[0]
    ]


def _phase(stack: str) -> str:
    for name, markers in PHASE_RULES:
        if any(marker in stack for marker in markers):
            return name
    return "other"


def phases(samples: Sequence[Sample]) -> Counter[str]:
    """Main-thread samples per phase."""
    counts: Counter[str] = Counter()
    for sample in _main_thread(samples):
        counts[_phase(";".join(sample.frames))] += sample.count
    return counts


def _component(sample: Sample) -> str:
    if any("_find_and_load" in f for f in sample.frames):
        return "imports (module loading)"
    for frame in reversed(sample.frames):
        for name, markers in COMPONENT_RULES:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def components(samples: Sequence[Sample]) -> Counter[tuple[str, str]]:
    """Samples per (process role, component); the role is `main` or `subprocess`."""
    counts: Counter[tuple[str, str]] = Counter()
    for sample in samples:
        role = "main process" if sample.main_process else "subprocess (Prefect API server)"
        counts[(role, _component(sample))] += sample.count
    return counts


def _function(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def top_functions(samples: Sequence[Sample], limit: int) -> list[tuple[str, int]]:
    """The main thread's functions by inclusive samples (each counted once per stack)."""
    counts: Counter[str] = Counter()
    for sample in _main_thread(samples):
        for name in {_function(f) for f in sample.frames}:
            counts[name] += sample.count
    return counts.most_common(limit)


def _print_counter(title: str, rows: Iterable[tuple[str, int]], rate: float) -> None:
    print(f"\n{title}")
    for name, count in rows:
        print(f"  {count / rate:8.2f}s  {name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary of one raw profile."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("profile", type=Path)
    p.add_argument("--rate", type=float, default=100.0, help="py-spy --rate used (default 100)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    samples = parse(args.profile.read_text(errors="replace").splitlines())
    total = sum(s.count for s in samples)
    print(f"{args.profile}: {total} samples = {total / args.rate:.1f}s (all threads)")
    _print_counter("main thread by phase", phases(samples).most_common(), args.rate)
    rows = [(f"{role}: {comp}", n) for (role, comp), n in components(samples).most_common()]
    _print_counter("samples by component (all threads)", rows, args.rate)
    _print_counter("main thread, top functions", top_functions(samples, args.top), args.rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
