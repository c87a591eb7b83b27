"""HTTP/1.1 plumbing of the zoo: parsed request heads, streamed bodies, error answers, resets.

Bodies are copied in 64 KiB pieces, never buffered whole, so a proxy in
front of a multi-GB blob uses flat memory. The exceptions say which side
went away, so the relay can answer the other side as a real registry (or
load balancer) would: a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

PIECE = 64 * 1024
HEAD_LIMIT = 1024 * 1024
REALM_PREFIX = "/_realm/"
REASONS = {
    200: "OK",
    206: "Partial Content",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_UPLOAD_ID_RE = re.compile(r"/uploads/[^/]+$")


class Counted(Protocol):
    """What a body copy counts its bytes into (a `ProxyRequest`)."""

    status: int | None
    bytes_up: int
    bytes_down: int


@dataclass
class Request:
    """A parsed request head.

    Attributes:
        kind: the `classify_path` kind, or `token` for the token realm.
        repository: the repository the path names, or None.
        upstream: where to forward it (None: the registry).
    """

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    kind: str
    repository: str | None
    upstream: tuple[str, int] | None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return header(self.headers, name.lower())

    @property
    def bearer(self) -> bool:
        """Whether a Bearer token was sent."""
        return self.token is not None

    @property
    def token(self) -> str | None:
        """The Bearer token sent, if any."""
        value = self.header("authorization") or ""
        return value[7:] if value.lower().startswith("bearer ") else None

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> list[str]:
        """The `name=value` parameters of the target, in order."""
        return [p for p in self.target.partition("?")[2].split("&") if p]

    @property
    def streak_key(self) -> tuple[str, str]:
        """The request, the same across retries: upload ids and `_state` left out."""
        path, _, query = self.target.partition("?")
        path = _UPLOAD_ID_RE.sub("/uploads/*", path)
        params = sorted(p for p in query.split("&") if p and not p.startswith("_state="))
        return self.method, path + "?" + "&".join(params)

    def head(self, *, method: str | None = None, extra: Sequence[tuple[str, str]] = ()) -> bytes:
        """The request head to send on (optionally as another method, with more headers)."""
        lines = [f"{method or self.method} {self.target} {self.version}"]
        lines += [f"{k}: {v}" for k, v in [*self.headers, *extra]]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class Answer:
    """A response the zoo makes itself, counted as fault (or quirk) `fault`."""

    status: int
    fault: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Reset(Exception):
    """Abort the client connection with a RST."""


class NotHTTP(Exception):
    """The client sent something that is not HTTP (a TLS handshake)."""


class ReadFailed(Exception):
    """The peer being read from closed or reset the connection."""


class WriteFailed(Exception):
    """The peer being written to closed or reset the connection."""


class Upstream:
    """One upstream connection (reader, writer) reused for successive requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        """Close the connection (the registry sees an EOF)."""
        self.writer.close()


@dataclass
class Client:
    """One client connection, and the registry connections kept open for its requests.

    `upstreams` maps a request's `upstream` (None: the registry) to the
    connection its successive requests reuse.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    upstreams: dict[tuple[str, int] | None, Upstream] = field(default_factory=dict)


def split_header(line: str) -> tuple[str, str]:
    """`Name: value` → `(name, value)`."""
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


def header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The first value of the lower-case header `name`, or None."""
    return next((v for k, v in headers if k.lower() == name), None)


def has_body(headers: Sequence[tuple[str, str]]) -> bool:
    """Whether a message framed by `headers` carries a body."""
    if "chunked" in (header(headers, "transfer-encoding") or "").lower():
        return True
    return (header(headers, "content-length") or "0").strip() not in ("", "0")


def response_head(status_line: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """A response head, ready to write."""
    lines = [status_line, *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_response_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]]:
    """`(status line, headers)` of the next response on `reader`."""
    head = await read_until(reader, b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], [split_header(line) for line in lines[1:] if line]


async def read(reader: asyncio.StreamReader, size: int) -> bytes:
    """Up to `size` bytes (b"" at EOF); `ReadFailed` if the peer reset."""
    try:
        return await reader.read(size)
    except (ConnectionError, OSError) as exc:
        raise ReadFailed from exc


async def read_until(reader: asyncio.StreamReader, separator: bytes) -> bytes:
    """Bytes up to and including `separator`; `ReadFailed` if the peer went away first."""
    try:
        return await reader.readuntil(separator)
    except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise ReadFailed from None


async def write(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    """Write and drain (None: drop the data); `WriteFailed` if the peer went away."""
    if writer is None:
        return
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionError, OSError) as exc:
        raise WriteFailed from exc


async def copy_exact(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    size: int,
    record: Counted,
    direction: str,
    *,
    rate: float | None = None,
) -> None:
    """Copy exactly `size` bytes, counting them `up` or `down` on `record`."""
    remaining = size
    while remaining > 0:
        piece = await read(reader, min(PIECE, remaining))
        if not piece:
            raise ReadFailed
        remaining -= len(piece)
        if direction == "up":
            record.bytes_up += len(piece)
        else:
            record.bytes_down += len(piece)
        await write(writer, piece)
        if rate:
            await asyncio.sleep(len(piece) / rate)


async def _copy_chunked(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    record: Counted,
    direction: str,
    rate: float | None,
) -> None:
    """Pass a chunked body through unchanged (chunk framing included)."""
    while True:
        line = await read_until(reader, b"\r\n")
        await write(writer, line)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = await read_until(reader, b"\r\n")
                await write(writer, trailer)
                if trailer == b"\r\n":
                    return
        await copy_exact(reader, writer, size, record, direction, rate=rate)
        await write(writer, await read_until(reader, b"\r\n"))


async def copy_body(
    headers: Sequence[tuple[str, str]],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    record: Counted,
    direction: str,
    *,
    rate: float | None = None,
) -> bool:
    """Copy a message body framed by `headers`; False when it was delimited by EOF.

    Raises:
        ReadFailed: the side being read from went away.
        WriteFailed: the side being written to went away.
    """
    if "chunked" in (header(headers, "transfer-encoding") or "").lower():
        await _copy_chunked(reader, writer, record, direction, rate)
        return True
    length = header(headers, "content-length")
    if length is not None:
        await copy_exact(reader, writer, int(length), record, direction, rate=rate)
        return True
    if direction == "up":
        return True  # a request without framing has no body
    while piece := await read(reader, PIECE):
        record.bytes_down += len(piece)
        await write(writer, piece)
    return False


async def drain_body(request: Request, reader: asyncio.StreamReader, record: Counted) -> None:
    """Read and drop a request body the proxy answers itself."""
    await copy_body(request.headers, reader, None, record, "up")


def error_body(status: int, kind: str, *, code: str | None = None, message: str = "") -> bytes:
    """An OCI `errors[]` body for an answer the zoo makes itself (none for a redirect)."""
    if status == 307:
        return b""
    code = code or {
        429: "TOOMANYREQUESTS",
        400: "UNSUPPORTED",
        401: "UNAUTHORIZED",
        403: "DENIED",
        404: "BLOB_UNKNOWN",
        405: "UNSUPPORTED",
        413: "SIZE_INVALID",
        416: "BLOB_UPLOAD_INVALID",
    }.get(status, "UNAVAILABLE")
    text = (message or f"injected fault {kind}").replace('"', "'")
    return f'{{"errors":[{{"code":"{code}","message":"{text}"}}]}}'.encode()


async def answer(
    writer: asyncio.StreamWriter,
    record: Counted,
    status: int,
    headers: dict[str, str],
    body: bytes,
    *,
    head: bool = False,
) -> None:
    """Write a whole response the zoo makes itself (the body left out for a HEAD)."""
    record.status = status
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    headers = {"Content-Length": str(len(body)), **headers}
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head:
        writer.write(body)
        record.bytes_down = len(body)
    await writer.drain()


def abort(writer: asyncio.StreamWriter) -> None:
    """Reset the connection: RST instead of an orderly FIN."""
    sock: socket.socket | None = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
