"""A blob storage origin of the zoo: what a registry's 307 for a blob `GET` leads to.

Docker Hub answers blob GETs with a redirect to its CDN (Cloudflare), Harbor
to presigned S3/OSS URLs, GAR and ECR to signed storage URLs. Such an origin
is another origin than the registry: the URL carries its own authorisation
(the presigning), and S3 refuses a request that also carries an
`Authorization` header with 400 "Only one auth mechanism allowed" (the
`InvalidArgument` XML error). Some CDNs ignore `Range` and answer 200 with
the whole blob (registry.k8s.io's, containers/container-libs PR #1114).

The relay's quirk (`Quirks.storage`) presigns: it remembers the request's
path and its `Authorization` (the registry's token) under a random ticket,
and the origin fetches the blob from the registry with them, streamed. Every
request that arrives with an `Authorization` header is counted in
`authorized()`: a client that forwards credentials across origins shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import threading

from tests.support.zoo import wire
from tests.support.zoo.server import LoopServer
from tests.support.zoo.stats import Counters, ProxyRequest
from tests.support.zoo.wire import Request

__all__ = ["CdnOrigin"]

_S3_AUTH_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
    b"<Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
    b"Signature query string parameter or the Authorization header should be specified"
    b"</Message></Error>"
)
_PASSED_ON = ("content-length", "content-type", "content-range", "accept-ranges", "etag")


class CdnOrigin(LoopServer):
    """Serve presigned blob URLs from the registry at `upstream`.

    Args:
        upstream: the registry's `host:port`.
        honour_range: pass `Range` on (S3: 206); False answers every GET
            200 with the whole blob, as a Range-ignoring CDN does.
        upstream_tls: an SSL context to reach an HTTPS registry, or None.
    """

    def __init__(
        self,
        upstream: str,
        *,
        honour_range: bool,
        upstream_tls: ssl.SSLContext | None = None,
        name: str = "zoo-cdn",
    ):
        super().__init__(name=name)
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.honour_range = honour_range
        self._upstream_tls = upstream_tls
        self._lock = threading.Lock()
        self.counters = Counters(self._lock)
        self._tickets: dict[str, tuple[str, str | None]] = {}

    def presign(self, path: str, authorization: str | None) -> str:
        """A URL on this origin that serves the registry's `path` with `authorization`."""
        ticket = secrets.token_hex(8)
        with self._lock:
            self._tickets[ticket] = (path, authorization)
        digest = path.rsplit("/", 1)[-1]
        return f"{self.scheme}://{self.host}/blobs/{digest}?X-Amz-Signature={ticket}"

    def authorized(self) -> list[ProxyRequest]:
        """Requests that arrived with an `Authorization` header (a client leaking it)."""
        return [r for r in self.counters.requests() if r.authorization is not None]

    def served_bytes(self) -> int:
        """Body bytes this origin sent."""
        return sum(r.bytes_down for r in self.counters.requests())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve GETs (and HEADs) of presigned URLs on one connection."""
        self.counters.connected()
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers = [wire.split_header(line) for line in lines[1:] if line]
                request = Request(method, target, version, headers, "cdn", None, None)
                record = self.counters.begin(request)
                try:
                    if not await self._serve_one(request, record, writer):
                        return
                finally:
                    self.counters.end(request, record)
        except (asyncio.CancelledError, Exception):
            wire.abort(writer)

    async def _serve_one(
        self, request: Request, record: ProxyRequest, writer: asyncio.StreamWriter
    ) -> bool:
        if request.header("authorization") is not None:
            self.counters.fault("authorization-refused", record)
            xml = {"Content-Type": "application/xml"}
            await wire.answer(writer, record, 400, xml, _S3_AUTH_ERROR)
            return True
        ticket = next((p[16:] for p in request.query if p.startswith("X-Amz-Signature=")), "")
        with self._lock:
            found = self._tickets.get(ticket)
        if found is None or request.method not in ("GET", "HEAD"):
            await wire.answer(writer, record, 403, {}, b"<Error><Code>AccessDenied</Code></Error>")
            return True
        path, authorization = found
        wanted = request.header("range") if self.honour_range else None
        if request.header("range") and not self.honour_range:
            self.counters.fault("range-ignored", record)
        await self._relay_blob(request, record, writer, path, authorization, wanted)
        return (request.header("connection") or "").lower() != "close"

    async def _relay_blob(
        self,
        request: Request,
        record: ProxyRequest,
        writer: asyncio.StreamWriter,
        path: str,
        authorization: str | None,
        wanted: str | None,
    ) -> None:
        host, port = self.upstream
        tls = self._upstream_tls
        reader, upstream = await asyncio.open_connection(
            host, port, ssl=tls, limit=wire.HEAD_LIMIT, server_hostname=host if tls else None
        )
        try:
            lines = [f"{request.method} {path} HTTP/1.1", f"Host: {host}:{port}"]
            lines += [f"Authorization: {authorization}"] if authorization else []
            lines += [f"Range: {wanted}"] if wanted else []
            lines += ["Connection: close"]
            await wire.write(upstream, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status_line, headers = await wire.read_response_head(reader)
            record.status = int(status_line.split(" ", 2)[1])
            kept = [(k, v) for k, v in headers if k.lower() in _PASSED_ON]
            await wire.write(writer, wire.response_head(status_line, kept))
            if request.method != "HEAD":
                await wire.copy_body(headers, reader, writer, record, "down")
        finally:
            upstream.close()
            with contextlib.suppress(Exception):
                await upstream.wait_closed()
