"""A real Prefect stack for acceptance tests: `prefect server start` (SQLite) and workers.

Everything runs as child processes of the test session, each in its own
process group with its output in a log file under the stack's directory, and
is stopped by its own PID (the group it leads) at teardown. The server keeps
its database in a fresh `PREFECT_HOME`, so nothing of the machine's own
Prefect profile, database or settings is read or written.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.registry_server import free_port

ROOT = Path(__file__).resolve().parents[2]
POOL = "image-syncer"

_STOP_TIMEOUT = 15.0
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_LIVE: list[Process] = []


def prefect_cli() -> list[str]:
    """The `prefect` command of this interpreter's installation."""
    return [sys.executable, "-m", "prefect"]


def base_environment(home: Path, api_url: str) -> dict[str, str]:
    """The machine's environment without any Prefect setting or proxy, plus ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k.upper() not in _PROXY_VARS
    }
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        # Workers poll every second (default 10 s), so the tests do not wait on polling.
        PREFECT_WORKER_QUERY_SECONDS="1",
        # A transfer waiting for a `registry:<host>` slot is told to retry after the
        # limit's average slot occupancy times the queue, capped by this (default 30 s,
        # and the average starts at 2 s): fine for long transfers, slow for tiny test blobs.
        PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DOCKER_CONFIG", None)
    env.pop("DEFAULT_REGISTRY", None)
    return env


@dataclass
class Process:
    """A child process that leads its own process group, with its output in `log`."""

    name: str
    command: list[str]
    log: Path
    popen: subprocess.Popen[bytes]
    stopped: bool = False

    @property
    def pid(self) -> int:
        """PID of the process (and id of the group it leads)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        """The last lines of the log, for failure messages."""
        if not self.log.exists():
            return "(no log)"
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM the group this process leads, then SIGKILL what is left (idempotent)."""
        if self.stopped:  # never signal a group id that may have been reused since
            return
        self.stopped = True
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=_STOP_TIMEOUT)
        # The leader if it ignored SIGTERM, and any child it left behind in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=_STOP_TIMEOUT)


def spawn(
    name: str, command: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path = ROOT
) -> Process:
    """Start `command` in a new session (its own process group), output into `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = Process(name, list(command), log, popen)
    _LIVE.append(process)
    return process


@atexit.register
def _stop_leftovers() -> None:
    # Safety net for sessions that end without fixture teardown (e.g. KeyboardInterrupt
    # at the wrong moment): fixtures normally stop every process.
    for process in reversed(_LIVE):
        with contextlib.suppress(Exception):
            process.stop()


@dataclass
class PrefectStack:
    """One `prefect server start` with SQLite in a fresh `PREFECT_HOME`, plus its workers.

    Attributes:
        workdir: holds `home/` (PREFECT_HOME, with `prefect.db`) and `logs/`.
        port: the server's port; the UI is `ui_url`, the API `api_url`.
        processes: every process started, stopped in reverse order by `stop()`.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)

    @property
    def home(self) -> Path:
        """PREFECT_HOME of the server, the CLI calls and the workers."""
        return self.workdir / "home"

    @property
    def logs(self) -> Path:
        """Directory with one log file per process."""
        return self.workdir / "logs"

    @property
    def ui_url(self) -> str:
        """Base URL of the UI."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """PREFECT_API_URL of everything in the stack."""
        return f"{self.ui_url}/api"

    @property
    def database(self) -> Path:
        """The server's SQLite database file."""
        return self.home / "prefect.db"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a process of the stack."""
        return {**base_environment(self.home, self.api_url), **extra}

    def start_server(self, timeout: float = 90.0) -> Process:
        """Start the server and wait until `/api/health` answers.

        Raises:
            RuntimeError: the server exited or did not become healthy in time.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        command = [
            *prefect_cli(),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        server = spawn("server", command, self.logs / "server.log", self.env())
        self.processes.append(server)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if not server.alive():
                    raise RuntimeError(
                        f"prefect server exited with {server.popen.returncode}:\n{server.tail()}"
                    )
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return server
                except httpx.TransportError:
                    pass
                time.sleep(0.25)
        raise RuntimeError(f"prefect server not healthy within {timeout:.0f}s:\n{server.tail()}")

    def cli(
        self, *args: str, timeout: float = 120.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `prefect <args>` from the checkout root; its output goes to the logs too.

        Raises:
            RuntimeError: the command failed (with its output).
        """
        # `{{ $PWD }}` in prefect.yaml is read from the environment, not from the
        # working directory: a shell sets PWD on `cd`, subprocess.run(cwd=...) does not.
        environment = {**self.env(PWD=str(ROOT)), **(env or {})}
        command = [*prefect_cli(), *args]
        result = subprocess.run(
            command,
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "cli.log").open("a") as log:
            log.write(f"$ prefect {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
        if result.returncode != 0:
            raise RuntimeError(
                f"prefect {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def start_worker(self, name: str, limit: int) -> Process:
        """Start `prefect worker start --pool image-syncer --name NAME --limit N`."""
        command = [
            *prefect_cli(),
            "worker",
            "start",
            "--pool",
            POOL,
            "--name",
            name,
            "--limit",
            str(limit),
        ]
        worker = spawn(f"worker {name}", command, self.logs / f"{name}.log", self.env())
        self.processes.append(worker)
        return worker

    def log_files(self) -> list[Path]:
        """Every log file of the stack (server, workers, CLI calls)."""
        return sorted(self.logs.glob("*.log"))

    def leftovers(self) -> list[int]:
        """PIDs of processes of this stack that `processes` does not hold: flow runs.

        The process worker starts each flow run in a session of its own, so stopping
        a worker's group leaves a still-running flow run behind. They are recognised
        by this stack's PREFECT_HOME (a fresh temporary directory) in their environment.
        """
        marker = f"PREFECT_HOME={self.home}".encode()
        known = {p.pid for p in self.processes}
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                variables = (entry / "environ").read_bytes().split(b"\0")
            except OSError:  # gone, or not ours to read
                continue
            if marker in variables and int(entry.name) not in known | {os.getpid()}:
                found.append(int(entry.name))
        return found

    def _kill_leftovers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.leftovers()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while pids and time.monotonic() < deadline:
                time.sleep(0.1)
                pids = self.leftovers()
            if not pids:
                return

    def stop(self) -> None:
        """Stop every process by its PID: workers, then flow runs they left, then the server."""
        errors: list[BaseException] = []
        server, others = self.processes[:1], self.processes[1:]
        for stop in [*(p.stop for p in reversed(others)), self._kill_leftovers]:
            try:
                stop()
            except BaseException as error:  # keep stopping the others
                errors.append(error)
        for process in server:
            try:
                process.stop()
            except BaseException as error:
                errors.append(error)
        if errors:
            raise errors[0]
