"""A small HTTP/1.1 forwarding proxy that counts simultaneous blob uploads.

Put it in front of a plain-HTTP registry (write `proxy.host` into the images
and auth files); it forwards every request unchanged (the `Host` header too,
so upload `Location`s lead back through it) and records each blob upload
`PUT .../blobs/uploads/<id>?digest=...` with its start and end. With
`upload_rate`, upload bodies are forwarded at that many bytes per second, so
uploads last long enough for overlaps to be unmistakable.

A TLS ClientHello (an `insecure` client probing HTTPS first) is answered by
hanging up at once, as a plain-HTTP server would refuse it, so clients fall
back to HTTP without waiting for a timeout.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["CountingProxy", "Upload"]

_PIECE = 64 * 1024
_TLS_HANDSHAKE = 0x16


@dataclass
class Upload:
    """One blob upload `PUT`: from its request head to the end of its response."""

    target: str
    started: float
    ended: float | None = None
    status: int | None = None


class _Closed(Exception):
    """A peer closed its connection."""


def _read_head(stream: BinaryIO) -> list[bytes] | None:
    """Lines of a request or response head (with their CRLF); None at a clean EOF."""
    lines: list[bytes] = []
    while True:
        line = stream.readline(65536)
        if not line:
            if lines:
                raise _Closed("connection closed inside a message head")
            return None
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return lines


def _headers(lines: list[bytes]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def _copy_exact(source: BinaryIO, sink: socket.socket, size: int, rate: float | None) -> None:
    left = size
    while left > 0:
        piece = source.read(min(_PIECE, left))
        if not piece:
            raise _Closed("connection closed inside a body")
        sink.sendall(piece)
        left -= len(piece)
        if rate:
            time.sleep(len(piece) / rate)


def _copy_chunked(source: BinaryIO, sink: socket.socket) -> None:
    while True:
        size_line = source.readline(65536)
        if not size_line:
            raise _Closed("connection closed inside a chunked body")
        sink.sendall(size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the final CRLF
                trailer = source.readline(65536)
                sink.sendall(trailer)
                if trailer in (b"\r\n", b"\n", b""):
                    return
        _copy_exact(source, sink, size + 2, None)  # chunk data + CRLF


def _copy_to_eof(source: BinaryIO, sink: socket.socket) -> None:
    while piece := source.read1(_PIECE):  # type: ignore[attr-defined]
        sink.sendall(piece)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: CountingProxy

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a peer hanging up (or stop() cutting connections) is not an error here


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        proxy = self.server.proxy
        client: socket.socket = self.request
        proxy._track(client)
        upstream: socket.socket | None = None
        reader: BinaryIO | None = None
        upstream_reader: BinaryIO | None = None
        try:
            first = client.recv(1, socket.MSG_PEEK)
            if not first or first[0] == _TLS_HANDSHAKE:
                return
            reader = client.makefile("rb")
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                if upstream is None:
                    upstream = socket.create_connection(proxy.upstream)
                    proxy._track(upstream)
                    upstream_reader = upstream.makefile("rb")
                assert upstream_reader is not None
                if not self._exchange(head, reader, upstream, upstream_reader):
                    return
        except (OSError, ValueError, _Closed):
            return
        finally:
            for stream in (reader, upstream_reader):
                if stream is not None:
                    stream.close()
            for sock in (upstream, client):
                if sock is not None:
                    proxy._untrack(sock)
                    sock.close()

    def _exchange(
        self, head: list[bytes], reader: BinaryIO, upstream: socket.socket, replies: BinaryIO
    ) -> bool:
        """Forward one request and its response; False when the connection must close."""
        proxy = self.server.proxy
        method, target, _ = head[0].decode("latin-1").split(" ", 2)
        request_headers = _headers(head)
        if "chunked" in request_headers.get("transfer-encoding", "").lower():
            raise _Closed("chunked request bodies are not supported by this proxy")
        upload = None
        if method == "PUT" and "/blobs/uploads/" in target:
            upload = proxy._begin_upload(target)
        status: int | None = None
        try:
            upstream.sendall(b"".join(head))
            size = int(request_headers.get("content-length", "0"))
            _copy_exact(reader, upstream, size, proxy.upload_rate if upload else None)
            response = _read_head(replies)
            if response is None:
                raise _Closed("upstream closed before answering")
            status = int(response[0].split(b" ", 2)[1])
            response_headers = _headers(response)
            self.request.sendall(b"".join(response))
            keep_alive = True
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                pass
            elif "content-length" in response_headers:
                _copy_exact(replies, self.request, int(response_headers["content-length"]), None)
            elif "chunked" in response_headers.get("transfer-encoding", "").lower():
                _copy_chunked(replies, self.request)
            else:
                _copy_to_eof(replies, self.request)
                keep_alive = False
        finally:
            if upload is not None:
                proxy._end_upload(upload, status)
        closing = "close" in (
            request_headers.get("connection", "").lower(),
            response_headers.get("connection", "").lower(),
        )
        return keep_alive and not closing


class CountingProxy:
    """The proxy; use as a context manager, or `start()` / `stop()`.

    Args:
        upstream: the registry's `host:port` (plain HTTP).
        upload_rate: bytes per second at which blob upload bodies are forwarded (None: as
            fast as they come).

    Attributes:
        uploads: every blob upload `PUT` seen, in arrival order.
        max_uploads: the most blob upload `PUT`s in flight at one moment.
    """

    def __init__(self, upstream: str, *, upload_rate: float | None = None):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.upload_rate = upload_rate
        self.uploads: list[Upload] = []
        self.max_uploads = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT` of the proxy."""
        if self._server is None:
            raise RuntimeError("proxy is not running")
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CountingProxy:
        """Listen on a free loopback port and serve in a background thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, cut every open connection, wait for the handlers (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _begin_upload(self, target: str) -> Upload:
        upload = Upload(target, time.monotonic())
        with self._lock:
            self.uploads.append(upload)
            self._in_flight += 1
            self.max_uploads = max(self.max_uploads, self._in_flight)
        return upload

    def _end_upload(self, upload: Upload, status: int | None) -> None:
        with self._lock:
            upload.ended = time.monotonic()
            upload.status = status
            self._in_flight -= 1
