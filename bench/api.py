"""The Prefect API image-syncer reports to during the benchmark.

The issue's targets are stated for a hosted Prefect API: the API is a
long-running service the nightly job talks to, not something each run
starts. Three kinds (`--api`):

- `postgres` (default): `prefect server start` backed by a private
  PostgreSQL cluster, the configuration Prefect recommends for production
  self-hosting. Started once, before the measured runs, on free loopback
  ports, with its data in the work directory.
- `sqlite`: `prefect server start` on its default SQLite database.
- `temporary`: no `PREFECT_API_URL`; every run starts Prefect's temporary
  API server itself (what a plain `python flows/sync.py` does).

A hosted server is outside the measured process tree (as Prefect Cloud
would be), but it runs on the same cores: its CPU seconds during each run
are recorded (`api_cpu_s`) so that cost stays visible.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.measure import descendants

__all__ = ["KINDS", "PrefectApi"]

KINDS = ("postgres", "sqlite", "temporary")
_PG_USER = "postgres"


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary (Debian keeps them out of PATH)."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: install postgresql (apt-get install postgresql)")
    return found


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its live descendants, including reaped children (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for current in descendants(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime (fields 14-17 of stat, 0-based 11-14 after the name)
            total += sum(int(value) for value in fields[11:15]) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total


class PrefectApi:
    """A long-running Prefect API (or none, for `temporary`), stopped by `stop()`."""

    def __init__(self, kind: str, workdir: Path):
        if kind not in KINDS:
            raise ValueError(f"unknown API kind {kind!r}")
        self.kind = kind
        self.workdir = workdir / f"api-{kind}"
        self.url: str | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._pg_data: Path | None = None
        self._pg_pid: int | None = None
        self._pg_root: Path | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start PostgreSQL (if needed) and the API server; wait until healthy."""
        from tests.support.registry_server import free_port

        if self.kind == "temporary":
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = self._server_env()
        if self.kind == "postgres":
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self._start_postgres()
        port = free_port()
        log = (self.workdir / "server.log").open("wb")
        server = [sys.executable, "-m", "prefect", "server", "start"]
        self._server = subprocess.Popen(
            [*server, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{port}/api"
        self._wait_healthy(timeout=120)
        print(f"Prefect API ({self.kind}) at {self.url}", flush=True)

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["PREFECT_HOME"] = str(self.workdir / "prefect-home")
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        env["DO_NOT_TRACK"] = "1"
        return env

    def _as_pg_user(self, argv: list[str]) -> list[str]:
        """PostgreSQL refuses to run as root: run its tools as `postgres` then."""
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", _PG_USER, "--", *argv]

    def _start_postgres(self) -> str:
        """initdb a private cluster, start it on a free port; return the asyncpg URL."""
        from tests.support.registry_server import free_port

        # Its own directory under /tmp: the work directory may be private to
        # root (mkdtemp), and the cluster runs as `postgres` when we are root.
        self._pg_root = Path(tempfile.mkdtemp(prefix="image-syncer-bench-pg-"))
        data, sockets = self._pg_root / "data", self._pg_root / "sock"
        sockets.mkdir()
        if os.geteuid() == 0:
            for path in (self._pg_root, sockets):
                shutil.chown(path, _PG_USER)
        port = free_port()
        initdb = [_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "prefect"]
        _quiet(self._as_pg_user(initdb))
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
        log = str(self._pg_root / "pg.log")
        start = [_pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", log]
        _quiet(self._as_pg_user([*start, "-w", "start"]))
        self._pg_data = data
        self._pg_pid = int((data / "postmaster.pid").read_text().split()[0])
        create = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "-d", "postgres"]
        _quiet([*create, "-c", "CREATE DATABASE prefect"])
        return f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server is not None and self._server.poll() is not None:
                raise RuntimeError(f"Prefect server exited; see {self.workdir / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"Prefect server not healthy after {timeout:.0f}s")

    def stop(self) -> None:
        """Stop the API server and PostgreSQL (idempotent)."""
        if self._server is not None and self._server.poll() is None:
            os.killpg(self._server.pid, 15)
            try:
                self._server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._server.pid, 9)
        self._server = None
        if self._pg_data is not None:
            stop = [_pg_bin("pg_ctl"), "-D", str(self._pg_data), "-m", "fast", "stop"]
            subprocess.run(self._as_pg_user(stop), capture_output=True, check=False)
            self._pg_data = None
        if self._pg_root is not None:
            shutil.rmtree(self._pg_root, ignore_errors=True)
            self._pg_root = None

    # -- measuring ---------------------------------------------------------------------

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by the API server and its database (None: temporary)."""
        if self._server is None:
            return None
        total = _tree_cpu_seconds(self._server.pid)
        if self._pg_pid is not None:
            total += _tree_cpu_seconds(self._pg_pid)
        return total

    def settle(self, quiet_seconds: float = 1.0, timeout: float = 60.0) -> None:
        """Wait until the server has drained the last run (its CPU stops moving)."""
        if self._server is None:
            return
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds() or 0.0
        while time.monotonic() < deadline:
            time.sleep(quiet_seconds)
            now = self.cpu_seconds() or 0.0
            if now - before < 0.05 * quiet_seconds:
                return
            before = now
