"""Prefect's temporary API, started by the CLI at once so it starts while we do.

Without `PREFECT_API_URL`, Prefect starts a temporary API server when the
first client is made: only after this process has imported Prefect, our
flows and, for the server class alone, Prefect's whole server package, and
then the server spends seconds on its own imports and database set-up. One
after the other, those were most of a one-rule no-op's whole-process time.

The CLI instead starts the very same server as soon as the configuration is
valid: Prefect's `create_app` factory under uvicorn with
`PREFECT__SERVER_EPHEMERAL` set, the command `SubprocessASGIServer` runs,
with this process's Prefect settings in its environment. It starts on the
second core while this process imports and plans; the run reaches it
through `PREFECT_API_URL` (for this run only, `temporary_settings`), and the
CLI stops it once every record is written (`flows.records`). It is still
the temporary API: SQLite under `PREFECT_HOME`, Prefect's startup timeout,
one rule subflow at a time (`active()`).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["EmbeddedApi", "active", "start_if_needed"]

log = logging.getLogger("image_syncer")

#: uvicorn's exit status when the port is taken (`SubprocessASGIServer` retries too).
_PORT_IN_USE = 3
_ACTIVE: EmbeddedApi | None = None


class EmbeddedApi:
    """One temporary API server process on a loopback port."""

    def __init__(self, startup_timeout: float):
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The API base URL, for `PREFECT_API_URL`."""
        return f"http://127.0.0.1:{self.port}/api"

    def spawn(self) -> None:
        """Start the server process on a free port (does not wait for it).

        Prefect is not imported yet: the server reads the same environment and
        profile as this process, which has changed no setting in code.
        """
        self.port = _free_port()
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        spec = importlib.util.find_spec("prefect")
        assert spec is not None and spec.origin is not None, "Prefect is not installed"
        prefect_root = Path(spec.origin).resolve().parent.parent
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_root)]
        argv += ["--factory", "prefect.server.api.server:create_app"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--log-level", "error", "--lifespan", "on"]
        self.process = subprocess.Popen(argv, env=env)

    def wait_healthy(self) -> None:
        """Block until `/health` answers 200; a taken port starts the server on another.

        Raises:
            RuntimeError: the server exited or did not answer within its startup timeout.
        """
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            status = self.process.poll()
            if status == _PORT_IN_USE:
                self.spawn()
                continue
            if status is not None:
                raise RuntimeError(f"the temporary Prefect API server exited with status {status}")
            if _healthy(self.url):
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"the temporary Prefect API server did not answer within {self.startup_timeout:.0f} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
        )

    def stop(self) -> None:
        """Terminate the server (killed after 5 s); idempotent."""
        global _ACTIVE
        process, self.process = self.process, None
        if _ACTIVE is self:
            _ACTIVE = None
        if process is None or process.poll() is not None:
            return
        log.info("Stopping temporary Prefect API server on %s", self.url.removesuffix("/api"))
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_if_needed() -> EmbeddedApi | None:
    """Start the temporary API now if this run would otherwise have Prefect start one.

    None when an API is configured (`PREFECT_API_URL`, a profile, a test
    harness) or Prefect's ephemeral mode is off: then nothing changes. The
    server is spawned before Prefect is imported here (that import is a
    second of this process's start-up the server overlaps); should the
    settings then name an API after all, it is stopped again.
    """
    global _ACTIVE
    if os.environ.get("PREFECT_API_URL"):
        return None
    api = EmbeddedApi(startup_timeout=120.0)
    api.spawn()
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        api.stop()
        return None
    api.startup_timeout = float(settings.server.ephemeral.startup_timeout_seconds)
    atexit.register(api.stop)
    _ACTIVE = api
    return api


def active() -> bool:
    """Whether this process's run uses the temporary API the CLI started."""
    return _ACTIVE is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
