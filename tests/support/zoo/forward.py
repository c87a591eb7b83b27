"""Forwarding one request to the registry and its response back, streamed, maybe cut.

The relay (`FaultProxy`) inherits this; it supplies how request heads and
response headers are rewritten. An upstream connection is reused across
the requests of one client connection; a keep-alive connection the registry
closed meanwhile is reopened once for a body-less request.
"""

from __future__ import annotations

import asyncio
import ssl

from tests.support.zoo import wire
from tests.support.zoo.rules import FaultRule
from tests.support.zoo.stats import Counters, ProxyRequest
from tests.support.zoo.uploads import kept_part_head
from tests.support.zoo.wire import Request, Reset

__all__ = ["Forwarder"]

#: The largest body `fetch` reads into memory (tag lists, error bodies: never blobs).
_FETCH_LIMIT = 4 * 1024 * 1024


class Forwarder:
    """Streams requests to the registry (`upstream`) and their responses back."""

    upload_rate: float | None
    download_rate: float | None

    def __init__(
        self, upstream: tuple[str, int], upstream_tls: ssl.SSLContext | None, counters: Counters
    ):
        self.upstream = upstream
        self._upstream_tls = upstream_tls
        self.counters = counters

    def release(self, request: Request) -> None:
        """A `cut` drawn for `request` did not apply."""

    def client_head(self, request: Request) -> bytes:
        """The head to send upstream for `request`."""
        return request.head()

    def rewrite_response(
        self, request: Request, status: int, headers: list[tuple[str, str]]
    ) -> tuple[int, list[tuple[str, str]]]:
        """The registry's response status and headers as the client gets them."""
        return status, headers

    async def connect(
        self, request: Request, upstreams: dict[tuple[str, int] | None, wire.Upstream]
    ) -> tuple[wire.Upstream, bool]:
        """The upstream connection for `request`, and whether it is a reused one."""
        existing = upstreams.get(request.upstream)
        if existing is not None and not existing.writer.is_closing():
            return existing, True
        host, port = request.upstream or self.upstream
        tls = self._upstream_tls if request.upstream is None else None
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, limit=wire.HEAD_LIMIT, server_hostname=host if tls else None
        )
        upstreams[request.upstream] = wire.Upstream(reader, writer)
        return upstreams[request.upstream], False

    async def fetch(
        self, request: Request, head: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send a body-less `head` on its own connection; `(status, headers, body)` back.

        For small answers only (tag lists, an error body, a HEAD): the body
        is read whole, up to 4 MiB.
        """
        upstream, _ = await self.connect(request, {})
        try:
            await wire.write(upstream.writer, head)
            status_line, headers = await wire.read_response_head(upstream.reader)
            status = int(status_line.split(" ", 2)[1])
            length = int(wire.header(headers, "content-length") or "0")
            body = b""
            if not head.startswith(b"HEAD ") and 0 < length <= _FETCH_LIMIT:
                body = await upstream.reader.readexactly(length)
            return status, headers, body
        finally:
            upstream.close()

    async def forward(
        self, request: Request, record: ProxyRequest, client: wire.Client, cut: FaultRule | None
    ) -> bool:
        """Send `request` on and stream the answer back; True to keep the client connection."""
        reader, writer, upstreams = client.reader, client.writer, client.upstreams
        for attempt in (1, 2):
            try:
                upstream, reused = await self.connect(request, upstreams)
            except OSError:
                self.counters.upstream_error(record)
                raise Reset from None
            try:
                await wire.write(upstream.writer, self.client_head(request))
                await wire.copy_body(
                    request.headers, reader, upstream.writer, record, "up", rate=self.upload_rate
                )
            except wire.ReadFailed:  # the client gave up sending its body: pass that on
                upstreams.pop(request.upstream, None)
                upstream.close()
                raise Reset from None
            except wire.WriteFailed:
                pass
            else:
                try:
                    status_line, headers = await wire.read_response_head(upstream.reader)
                    break
                except wire.ReadFailed:
                    pass
            upstreams.pop(request.upstream, None)
            upstream.close()
            if attempt == 1 and reused and not wire.has_body(request.headers):
                continue  # a keep-alive connection the registry closed meanwhile
            self.counters.upstream_error(record)
            raise Reset
        original = int(status_line.split(" ", 2)[1])
        status, headers = self.rewrite_response(request, original, headers)
        if status != original:
            version = status_line.split(" ", 1)[0]
            status_line = f"{version} {status} {wire.REASONS.get(status, 'Status')}"
        record.status = status
        no_body = request.method == "HEAD" or status in (204, 304)
        length = wire.header(headers, "content-length")
        if cut is not None and not (
            200 <= status < 300
            and not no_body
            and length
            and cut.allowance(int(length)) is not None
        ):
            self.release(request)  # only content is cut: give the rule its turn back
            cut = None
        try:
            return await self._respond(request, record, writer, upstream, status_line, headers, cut)
        except (wire.ReadFailed, wire.WriteFailed) as exc:
            upstream.close()
            if isinstance(exc, wire.ReadFailed):  # the registry died mid-body
                self.counters.upstream_error(record)
            raise Reset from None  # either way the client sees its response cut

    async def _respond(
        self,
        request: Request,
        record: ProxyRequest,
        writer: asyncio.StreamWriter,
        upstream: wire.Upstream,
        status_line: str,
        headers: list[tuple[str, str]],
        cut: FaultRule | None,
    ) -> bool:
        """Send the registry's response on (or cut it); True to keep the client connection."""
        no_body = request.method == "HEAD" or record.status in (204, 304)
        length = wire.header(headers, "content-length")
        await wire.write(writer, wire.response_head(status_line, headers))
        allowed = cut.allowance(int(length)) if cut is not None and length else None
        if allowed is not None:
            self.counters.fault("cut", record)
            await wire.copy_exact(upstream.reader, writer, allowed, record, "down")
            upstream.close()
            return False  # close: the client sees a truncated body
        if not no_body and not await wire.copy_body(
            headers, upstream.reader, writer, record, "down", rate=self.download_rate
        ):
            upstream.close()  # the body ended with the connection
            return False
        if (wire.header(headers, "connection") or "").lower() == "close":
            upstream.close()
            return False
        return (request.header("connection") or "").lower() != "close"

    async def cut_upload(
        self,
        request: Request,
        record: ProxyRequest,
        reader: asyncio.StreamReader,
        rule: FaultRule,
        resumable: bool,
    ) -> bool:
        """Let part of an upload body reach the registry, then reset the client.

        `resumable`: the part that arrived is committed to the session as a
        complete `PATCH` (a registry that keeps what it received).
        """
        allowed = rule.allowance(int(request.header("content-length") or "0"))
        assert allowed is not None
        self.counters.fault("cut-upload", record)
        try:
            upstream, _ = await self.connect(request, {})  # its own connection, closed below
        except OSError:
            self.counters.upstream_error(record)
            raise Reset from None
        try:
            head = kept_part_head(request, allowed) if resumable else None
            await wire.write(upstream.writer, head or self.client_head(request))
            await wire.copy_exact(reader, upstream.writer, allowed, record, "up")
            if head is not None:  # the registry answers the PATCH of the part it got
                status_line, headers = await wire.read_response_head(upstream.reader)
                self.rewrite_response(request, int(status_line.split(" ", 2)[1]), headers)
        except (wire.ReadFailed, wire.WriteFailed):
            pass
        finally:
            upstream.close()
        raise Reset
