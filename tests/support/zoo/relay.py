"""The zoo's relay: an HTTP/1.1 reverse proxy between image-syncer and a real registry.

Point the auth and images files at `proxy.host` instead of the registry; the
proxy forwards every request to the registry (keeping the `Host` header, so
the registry builds upload `Location`s that lead back through the proxy)
and, as its fault rules (`rules.py`), size limits and resumable sessions
(`uploads.py`) and quirks (`quirks.py`) say, answers some requests itself.

`refuse_mounts=S` refuses every cross-repository mount (fault
`mount-refused`): 202 forwards the request without `mount`/`from`, so the
registry opens a plain upload session (Docker Hub, GAR); 401/403/404 and
other statuses are answered with an error body (Harbor #17097: 401).

With `rewrite_realm=True` the Bearer realm of every challenge is rewritten to
`<proxy>/_realm/<token host:port>/<path>`, so token requests pass through the
proxy too (and `token-fail` can hit them). `override_manifest` serves chosen
bytes for a manifest (HEAD and GET, by tag and by their digest) without asking
the registry, counted as fault `garbage-manifest`: a fake registry for fuzzing
manifest parsing. `add_response_headers` adds headers (rate-limit hints) to
the registry's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import ssl
import threading
from collections.abc import Iterable

from tests.support.registry_server import classify_path
from tests.support.zoo import wire
from tests.support.zoo.forward import Forwarder
from tests.support.zoo.quirks import Quirks
from tests.support.zoo.rules import ANSWERED_KINDS, Decider, FaultRule, fault_response
from tests.support.zoo.server import LoopServer
from tests.support.zoo.stats import Counters, ProxyRequest, ProxyStats
from tests.support.zoo.uploads import SizeLimits, UploadStates
from tests.support.zoo.wire import Request, Reset

__all__ = ["FaultProxy"]

_REPO_RE = re.compile(r"^/v2/(?P<repo>.+?)/(?:manifests|blobs|tags)/")
_MANIFEST_RE = re.compile(r"^/v2/(?P<repo>.+?)/manifests/(?P<ref>[^/?]+)$")
_REFERRERS_RE = re.compile(r"^/v2/(?P<repo>.+?)/referrers/(?P<ref>sha256:[0-9a-f]{64})$")
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class FaultProxy(LoopServer, Forwarder):
    """The proxy. Use as a context manager, or `start()` / `stop()`.

    Args:
        upstream: the registry's `host:port`.
        seed: seed of the fault decisions.
        rules: initial fault rules (see `set_faults`).
        upstream_tls: an SSL context to reach an HTTPS registry, or None.
        tls: an SSL context to serve HTTPS to the client (TLS termination), or None.
        rewrite_realm: route Bearer token requests through the proxy.
        upload_rate: cap on forwarded request-body bytes per second per
            request (None: unlimited), to make uploads slow enough to watch.
        download_rate: the same cap on forwarded response bodies.
        resumable_uploads: keep upload state on the server's side (see
            `uploads.py`): cut uploads can be continued.
        monolithic_limit: 413 for an upload `PUT` with more body bytes (None: no limit).
        patch_limit: 416 for an upload `PATCH` with more body bytes (None: no limit).
        refuse_mounts: the status every mount request gets (None: mounts work).
        quirks: the behaviours of a named registry (`profiles.py`), or None.
    """

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        rules: Iterable[FaultRule] = (),
        upstream_tls: ssl.SSLContext | None = None,
        tls: ssl.SSLContext | None = None,
        rewrite_realm: bool = False,
        upload_rate: float | None = None,
        download_rate: float | None = None,
        resumable_uploads: bool = False,
        monolithic_limit: int | None = None,
        patch_limit: int | None = None,
        refuse_mounts: int | None = None,
        quirks: Quirks | None = None,
    ):
        LoopServer.__init__(self, tls=tls, name="fault-proxy")
        host, _, port = upstream.rpartition(":")
        self._lock = threading.Lock()
        Forwarder.__init__(self, (host, int(port)), upstream_tls, Counters(self._lock))
        self.rewrite_realm = rewrite_realm
        self.upload_rate = upload_rate
        self.download_rate = download_rate
        self.resumable_uploads = resumable_uploads
        self.limits = SizeLimits(monolithic_limit, patch_limit)
        self.refuse_mounts = refuse_mounts
        self.quirks = quirks or Quirks()
        self._states = UploadStates(self._lock)
        self._decider = Decider(seed, rules, self._lock)
        self._overrides: dict[tuple[str, str], tuple[bytes, str]] = {}
        self._extra_headers: list[tuple[FaultRule, dict[str, str]]] = []
        self._challenge: str | None = None
        self.stats = self.counters.stats
        self.log = self.counters.log

    def start(self) -> FaultProxy:
        """Start the storage origin of the quirks (if any), then the relay."""
        if self.quirks.storage is not None:
            self.quirks.storage.start()
        return super().start()

    def stop(self) -> None:
        """Stop the relay, then its storage origin (idempotent)."""
        super().stop()
        if self.quirks.storage is not None:
            self.quirks.storage.stop()

    # -- controls ----------------------------------------------------------------------------

    @property
    def monolithic_limit(self) -> int | None:
        """413 above this many bytes in an upload `PUT` (None: no limit)."""
        return self.limits.monolithic

    @property
    def patch_limit(self) -> int | None:
        """416 above this many bytes in an upload `PATCH` (None: no limit)."""
        return self.limits.patch

    def set_faults(self, *rules: FaultRule) -> None:
        """Replace the fault rules (the first rule that fires wins)."""
        self._decider.set_rules(rules)

    def clear_faults(self) -> None:
        """Inject nothing from now on."""
        self.set_faults()

    def override_manifest(
        self, repository: str, reference: str, body: bytes, media_type: str
    ) -> str:
        """Serve `body` for `repository:reference` and `repository@sha256(body)`.

        Returns:
            The digest the served bytes hash to.
        """
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        with self._lock:
            self._overrides[(repository, reference)] = (body, media_type)
            self._overrides[(repository, digest)] = (body, media_type)
        return digest

    def override_referrers(self, repository: str, digest: str, body: bytes) -> None:
        """Answer the OCI 1.1 referrers API for `repository@digest` with the index `body`.

        distribution 2.8 has no referrers API (404); this lets a test stand
        for a source registry that has one, for that subject only.
        """
        with self._lock:
            self._overrides[(f"referrers:{repository}", digest)] = (body, _OCI_INDEX)

    def add_response_headers(self, rule: FaultRule, headers: dict[str, str]) -> None:
        """Add `headers` to every forwarded response of a request `rule` matches."""
        with self._lock:
            self._extra_headers.append((rule, dict(headers)))

    def snapshot(self) -> ProxyStats:
        """A consistent copy of the counters."""
        return self.counters.snapshot()

    def requests(self) -> list[ProxyRequest]:
        """A copy of the request log, in arrival order."""
        return self.counters.requests()

    def active(self) -> list[ProxyRequest]:
        """Requests still in progress."""
        return self.counters.active()

    def uploads(self) -> list[ProxyRequest]:
        """Every blob upload `PUT`, in arrival order (what a registry limit caps)."""
        return self.counters.uploads()

    # -- connection handling --------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one client connection until it closes or is reset."""
        self.counters.connected()
        client = wire.Client(reader, writer)
        try:
            while await self._one_request(client):
                pass
        except Reset:
            wire.abort(writer)
        except wire.NotHTTP:
            writer.write(
                b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
            )
            with contextlib.suppress(Exception):
                await writer.drain()
        except (asyncio.CancelledError, Exception):  # any failure drops the client
            wire.abort(writer)
        finally:
            for upstream in client.upstreams.values():
                upstream.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            first = await reader.readexactly(1)
            if first == b"\x16":
                # A TLS ClientHello on the plain port: refuse at once, as Go's
                # net/http does, so a client probing https falls back quickly.
                raise wire.NotHTTP
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed the connection between requests
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [wire.split_header(line) for line in lines[1:] if line]
        upstream: tuple[str, int] | None = None
        kind = classify_path(target)
        if target.startswith(wire.REALM_PREFIX):
            netloc, _, rest = target[len(wire.REALM_PREFIX) :].partition("/")
            host, _, port = netloc.rpartition(":")
            upstream, target, kind = (host, int(port)), "/" + rest, "token"
            headers = [(k, netloc if k.lower() == "host" else v) for k, v in headers]
        match = _REPO_RE.match(target.split("?", 1)[0])
        repository = match["repo"] if match and kind != "token" else None
        return Request(method, target, version, headers, kind, repository, upstream)

    async def _one_request(self, client: wire.Client) -> bool:
        request = await self._read_request(client.reader)
        if request is None:
            return False
        record = self.counters.begin(request)
        try:
            return await self._handle(request, record, client)
        finally:
            self.counters.end(request, record)

    async def _refuse(
        self,
        request: Request,
        record: ProxyRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        refusal: wire.Answer,
    ) -> bool:
        """Drain the body and answer `refusal` (counted as its fault); keep the connection."""
        await wire.drain_body(request, reader, record)
        self.counters.fault(refusal.fault, record)
        head = request.method == "HEAD"
        await wire.answer(writer, record, refusal.status, refusal.headers, refusal.body, head=head)
        return True

    def _own_answer(self, request: Request) -> wire.Answer | None:
        """What the zoo answers itself instead of the registry, before any fault is drawn."""
        if self._is_mount(request) and self.refuse_mounts != 202:
            status = self.refuse_mounts or 0
            return wire.Answer(status, "mount-refused", wire.error_body(status, "mount"))
        refusal = self.quirks.refusal(request) or self.limits.refusal(request)
        if refusal is not None:
            return refusal
        override = self._override_for(request)
        if override is None:
            return None
        body, media_type = override
        headers = {
            "Content-Type": media_type,
            "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest(),
        }
        return wire.Answer(200, "garbage-manifest", body, headers)

    async def _handle(self, request: Request, record: ProxyRequest, client: wire.Client) -> bool:
        reader, writer = client.reader, client.writer
        if self.resumable_uploads:
            self._states.refresh(request)
        own = self._own_answer(request)
        if own is not None:
            return await self._refuse(request, record, reader, writer, own)
        if self._is_mount(request):
            self.counters.fault("mount-refused", record)
            request.target = _without_mount(request.target)
        decision = self._decider.decide(request)
        kind, rule = decision if decision else (None, None)
        if kind == "reset":
            self.counters.fault(kind, record)
            raise Reset
        if kind in ANSWERED_KINDS:
            with self._lock:
                challenge = self._challenge
            status, headers = fault_response(kind, rule, request, challenge)
            answer = wire.Answer(status, kind, wire.error_body(status, kind), headers)
            return await self._refuse(request, record, reader, writer, answer)
        if kind == "delay":
            assert rule is not None
            self.counters.fault(kind, record)
            await asyncio.sleep(rule.delay)
        if kind == "cut-upload":
            assert rule is not None
            return await self.cut_upload(request, record, reader, rule, self.resumable_uploads)
        special = await self.quirks.serve(self, request, record, writer)
        if special is not None:
            return special
        cut = rule if kind == "cut" else None
        return await self.forward(request, record, client, cut)

    def _is_mount(self, request: Request) -> bool:
        return (
            self.refuse_mounts is not None
            and request.method == "POST"
            and request.kind == "upload"
            and "mount=" in request.target
        )

    def _override_for(self, request: Request) -> tuple[bytes, str] | None:
        if request.method not in ("GET", "HEAD"):
            return None
        match = _MANIFEST_RE.match(request.path)
        prefix = ""
        if match is None:
            match, prefix = _REFERRERS_RE.match(request.path), "referrers:"
        if match is None:
            return None
        with self._lock:
            return self._overrides.get((prefix + match["repo"], match["ref"]))

    # -- what the forwarder asks of the relay -----------------------------------------------------

    def release(self, request: Request) -> None:
        """Give a `cut` that did not apply its turn back."""
        self._decider.release(request)

    def rewrite_response(
        self, request: Request, status: int, headers: list[tuple[str, str]]
    ) -> tuple[int, list[tuple[str, str]]]:
        """The registry's response status and headers as the client gets them."""
        result = []
        for name, value in headers:
            if name.lower() == "www-authenticate" and value.lower().startswith("bearer"):
                value = self._rewrite_challenge(value)
            if name.lower() == "location":
                self._states.remember(value)
            result.append((name, value))
        with self._lock:
            extra = [h for rule, h in self._extra_headers if rule.matches(request)]
        for added in extra:
            result.extend(added.items())
        return self.quirks.response(request, status, result)

    def client_head(self, request: Request) -> bytes:
        """The request head to send upstream (TLS termination says so)."""
        return self.client_head_as(request, request.method)

    def client_head_as(self, request: Request, method: str) -> bytes:
        """The head to send upstream for `request`, as `method` (a blob GET asked as HEAD)."""
        if self._tls is not None and request.upstream is None:
            return request.head(method=method, extra=[("X-Forwarded-Proto", "https")])
        return request.head(method=method)

    def _rewrite_challenge(self, value: str) -> str:
        if self.rewrite_realm:
            registry = f"{self.upstream[0]}:{self.upstream[1]}"

            def replace(match: re.Match[str]) -> str:
                if match["netloc"] == registry:
                    return match.group(0)
                return (
                    f'realm="{self.scheme}://{self.host}{wire.REALM_PREFIX}'
                    f'{match["netloc"]}{match["path"]}"'
                )

            value = _REALM_RE.sub(replace, value)
        with self._lock:
            self._challenge = value
        return value


_REALM_RE = re.compile(r'realm="(?P<scheme>https?)://(?P<netloc>[^/"]+)(?P<path>[^"]*)"')


def _without_mount(target: str) -> str:
    path, _, query = target.partition("?")
    kept = [p for p in query.split("&") if p and not p.startswith(("mount=", "from="))]
    return path + ("?" + "&".join(kept) if kept else "")
