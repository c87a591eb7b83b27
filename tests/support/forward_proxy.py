"""Run Debian's `tinyproxy` on loopback: a real forward proxy for `HTTP(S)_PROXY` tests.

Foreground (`-d`), on a free 127.0.0.1 port, accepting only 127.0.0.1, with
its log in the work directory; `requests()` returns the request lines it
logged (`CONNECT host:port` for tunnels, `GET http://...` for plain HTTP),
so a test can prove which traffic went through it, and which did not.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.registry_server import free_port, require_binary

__all__ = ["ForwardProxy", "running_forward_proxy", "tinyproxy_binary"]

# tinyproxy 1.11: `CONNECT   Dec 01 20:55:00.123 [1234]: Request (file descriptor 7): GET ...`
_REQUEST_RE = re.compile(r"Request \(file descriptor \d+\): (?P<line>\S+ \S+)")


def tinyproxy_binary() -> str:
    """Locate `tinyproxy` (see `registry_server.require_binary`)."""
    return require_binary("tinyproxy", "tinyproxy")


class ForwardProxy:
    """A running tinyproxy: its `url` and the request lines of its log."""

    def __init__(self, workdir: Path, port: int, process: subprocess.Popen[bytes]):
        self.workdir = workdir
        self.port = port
        self.process = process
        self.log_path = workdir / "tinyproxy.log"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, the value of `HTTP_PROXY` / `HTTPS_PROXY`."""
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """`METHOD target` of every request the proxy logged so far."""
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [match["line"] for match in _REQUEST_RE.finditer(text)]


def _config(workdir: Path, port: int) -> Path:
    path = workdir / "tinyproxy.conf"
    path.write_text(
        "\n".join(
            [
                f"Port {port}",
                "Listen 127.0.0.1",
                "Timeout 60",
                "Allow 127.0.0.1",
                "MaxClients 50",
                "LogLevel Info",
                f'LogFile "{workdir / "tinyproxy.log"}"',
                f'PidFile "{workdir / "tinyproxy.pid"}"',
                "DisableViaHeader Yes",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return path


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tinyproxy exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"tinyproxy did not listen on 127.0.0.1:{port} within {timeout} s")


@contextmanager
def running_forward_proxy(workdir: Path) -> Iterator[ForwardProxy]:
    """Start tinyproxy in `workdir`; always stop it (by PID) when the block exits."""
    binary = tinyproxy_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = _config(workdir, port)
    with (workdir / "tinyproxy.out").open("wb") as out:
        process = subprocess.Popen(
            [binary, "-d", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_listening(port, process)
        yield ForwardProxy(workdir, port, process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
