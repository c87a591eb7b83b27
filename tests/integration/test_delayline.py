"""The benchmark's WAN delay line (`bench/delayline.py`) in front of a real registry.

Timings are asserted as lower bounds only: the line sleeps at least the RTT and
the link's transmission time, so a bound below that can never fail by load;
the upper bounds are hang guards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.delayline import DelayLine
from tests.support.registry_server import RegistryServer

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
#: Slack for clocks: the line and the test read the same monotonic clock.
EPSILON = 0.002
HANG_GUARD = 10.0

pytestmark = [pytest.mark.registry, pytest.mark.timeout(60)]


@pytest.fixture
def line_log(tmp_path: Path) -> Iterator[Path]:
    """The line's stderr: it must stay empty (no traceback, no ResourceWarning)."""
    path = tmp_path / "delayline.log"
    yield path
    assert path.read_text() == "", path.read_text()


def _line(upstream: str, log: Path, rtt_ms: float = 40.0, rate_mbit: float = 1000.0) -> DelayLine:
    with log.open("a") as stderr:  # the child keeps its own descriptor
        return DelayLine(upstream, rtt_ms, rate_mbit, stderr=stderr).start()


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length (`GET /v2/` answers `{}`)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_new_connection_costs_two_round_trips_a_reused_one_costs_one(
    registry_plain: RegistryServer, line_log: Path
) -> None:
    rtt = 0.040
    line = _line(registry_plain.host, line_log, rtt_ms=rtt * 1000)
    try:
        host, port = line.host.split(":")
        request = f"GET /v2/ HTTP/1.1\r\nHost: {line.host}\r\n\r\n".encode()
        started = time.perf_counter()
        with socket.create_connection((host, int(port)), timeout=HANG_GUARD) as sock:
            sock.sendall(request)
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
            first = time.perf_counter() - started
            started = time.perf_counter()
            sock.sendall(request)  # the same keep-alive connection
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
            second = time.perf_counter() - started
    finally:
        line.stop()
    assert first >= 2 * rtt - EPSILON, first  # handshake + request
    assert second >= rtt - EPSILON, second
    print(f"rtt 40 ms: fresh connection {first * 1000:.1f} ms, reused {second * 1000:.1f} ms")


def _push_blob(base_url: str, repository: str, blob: bytes) -> tuple[str, str]:
    """POST, two streamed PATCHes, PUT; return the digest and the first Location."""
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    half = len(blob) // 2
    with httpx.Client(base_url=base_url, timeout=HANG_GUARD) as client:
        started = client.post(f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = first_location = started.headers["Location"]
        for part in (blob[:half], blob[half:]):
            chunks = (part[i : i + MIB] for i in range(0, len(part), MIB))
            patched = client.patch(
                location, content=chunks, headers={"Content-Type": "application/octet-stream"}
            )
            assert patched.status_code == 202, patched.text
            location = patched.headers["Location"]
        separator = "&" if "?" in location else "?"
        done = client.put(f"{location}{separator}digest={digest}")
        assert done.status_code == 201, done.text
    return digest, first_location


def _pull_digest(base_url: str, repository: str, digest: str) -> str:
    sha = hashlib.sha256()
    with (
        httpx.Client(base_url=base_url, timeout=HANG_GUARD) as client,
        client.stream("GET", f"/v2/{repository}/blobs/{digest}") as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def test_a_blob_pushed_and_pulled_through_the_line_keeps_its_bytes(
    registry_plain: RegistryServer, line_log: Path
) -> None:
    blob = os.urandom(3 * MIB + 12345)
    repository = f"delayline-{uuid.uuid4().hex[:8]}"
    line = _line(registry_plain.host, line_log, rtt_ms=40)
    try:
        digest, location = _push_blob(f"http://{line.host}", repository, blob)
        # The registry built its upload URL from the Host header, which passed through.
        assert httpx.URL(location).netloc.decode() in ("", line.host), location
        assert _pull_digest(f"http://{line.host}", repository, digest) == digest
    finally:
        line.stop()
    assert _pull_digest(registry_plain.url, repository, digest) == digest


def test_the_link_rate_is_shared_by_the_connections_of_a_line(
    registry_plain: RegistryServer, line_log: Path
) -> None:
    repository = f"delayline-{uuid.uuid4().hex[:8]}"
    eight, four = os.urandom(8 * MIB), os.urandom(4 * MIB)
    big, _ = _push_blob(registry_plain.url, repository, eight)  # directly, at loopback speed
    small, _ = _push_blob(registry_plain.url, repository, four)
    line = _line(registry_plain.host, line_log, rtt_ms=2, rate_mbit=100)
    base_url = f"http://{line.host}"
    try:
        started = time.perf_counter()
        assert _pull_digest(base_url, repository, big) == big
        alone = time.perf_counter() - started
        results: list[str] = []
        pulls = [
            threading.Thread(
                target=lambda: results.append(_pull_digest(base_url, repository, small))
            )
            for _ in range(2)
        ]
        started = time.perf_counter()
        for pull in pulls:
            pull.start()
        for pull in pulls:
            pull.join(HANG_GUARD)
        together = time.perf_counter() - started
    finally:
        line.stop()
    assert results == [small, small]
    link_seconds = 8 * MIB * 8 / 100e6  # 0.67 s for 8 MiB at 100 Mbit/s
    assert alone >= link_seconds, alone
    assert together >= link_seconds, together  # 2 x 4 MiB over one link, not one link each
    print(f"100 Mbit/s: 8 MiB in {alone:.3f} s, 2 x 4 MiB at once in {together:.3f} s")


def test_half_close_and_reset_reach_the_other_side(tmp_path: Path, line_log: Path) -> None:
    """An echo upstream answers after EOF; the client's reset closes the upstream."""
    upstream_closed = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:

        def serve() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    received = b""
                    while chunk := conn.recv(65536):
                        received += chunk
                    with contextlib.suppress(OSError):  # the reset client is gone
                        conn.sendall(received)  # only after the client's half-close
            upstream_closed.set()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        line = _line(f"127.0.0.1:{server.getsockname()[1]}", line_log, rtt_ms=10)
        try:
            host, port = line.host.split(":")
            payload = os.urandom(MIB)
            with socket.create_connection((host, int(port)), timeout=HANG_GUARD) as sock:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                echoed = b""
                while chunk := sock.recv(65536):
                    echoed += chunk
            assert echoed == payload
            with socket.create_connection((host, int(port)), timeout=HANG_GUARD) as sock:
                sock.sendall(b"partial")
                time.sleep(0.05)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            assert upstream_closed.wait(HANG_GUARD)
        finally:
            line.stop()
        thread.join(HANG_GUARD)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaped yet


def test_stop_leaves_no_process_and_a_dead_parent_takes_the_line_along(
    registry_plain: RegistryServer, line_log: Path
) -> None:
    line = _line(registry_plain.host, line_log)
    pid = line.pid
    assert pid is not None and not _gone(pid)
    line.stop()
    assert _gone(pid)
    assert line.pid is None

    parent_code = (
        "import sys, time\n"
        "from bench.delayline import DelayLine\n"
        f"line = DelayLine({registry_plain.host!r}).start()\n"
        "print(line.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        orphan = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(HANG_GUARD)
        deadline = time.monotonic() + HANG_GUARD
        while not _gone(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(orphan)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
