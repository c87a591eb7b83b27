"""A fault-injecting HTTP/1.1 reverse proxy to put between image-syncer and a real registry.

Point the auth and images files at `proxy.host` instead of the registry; the
proxy forwards every request to the registry (keeping the `Host` header, so
the registry builds upload `Location`s that lead back through the proxy) and,
as its `FaultRule`s say, answers some requests itself:

| kind               | what the client sees                                              |
| ------------------ | ----------------------------------------------------------------- |
| `500` `502` `503`  | that status with an OCI `errors[]` body                           |
| `429`              | 429 without `Retry-After`                                         |
| `429-retry-after`  | 429 with `Retry-After: <rule.retry_after>`                        |
| `reset`            | the connection reset (RST) before any response byte               |
| `cut`              | a real 2xx response's headers and part of its body, then EOF      |
| `delay`            | the real response, `rule.delay` seconds late                      |
| `token-fail`       | 503 from the token endpoint (requests routed through `/_realm/`)  |
| `invalidate-token` | 401 + a fresh Bearer challenge; that token stays revoked afterwards |
| `redirect`         | 307 to `rule.redirect(path)` (blob storage on another origin)     |
| `cut-upload`       | part of a PUT/PATCH body reaches the registry, then a reset       |

`cut` and `cut-upload` let `rule.cut_bytes` body bytes through (only bodies
longer than that are cut), or else `rule.cut_fraction` of the body. With
`resumable_uploads=True` the proxy stands for a registry that keeps upload
state on the server (an upload URL stays valid and a cut request keeps the
bytes that arrived): the part of a cut upload body that arrived is committed
to the session as a complete `PATCH`, and a request carrying a stale
distribution `_state` gets the session's latest one. Without it, a cut
upload is what distribution 2.8 makes of it: the session turns
`BLOB_UPLOAD_INVALID` (a registry that refuses to resume, like ACR).

Body-size limits of real registries (counted as faults `monolithic-limit`
and `patch-limit`; the body is read and dropped, as nginx's lingering close
does, then the refusal is answered): `monolithic_limit=N` answers 413 to an
upload `PUT` carrying more than N bytes (ACR over ~20 MB, Harbor #23015; 0
stands for a chunked-only registry), `patch_limit=N` answers 416 to a
`PATCH` over N bytes (GHCR over 4 MiB, ocx-sh/ocx PR #237).

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

Bodies are streamed in both directions in 64 KiB pieces, never buffered.
`stats` counts connections, requests by `(method, kind)`, the largest number
of requests in flight (overall and per `(method, kind)`), and every fault
injected; `log` keeps one `ProxyRequest` per request with its timings. The
proxy runs its own asyncio loop in a daemon thread; `stop()` closes every
socket before the loop, so nothing leaks a `ResourceWarning`.

Decisions are drawn from `random.Random(seed)`: the same seed gives the same
sequence of decisions, though concurrent requests may reach it in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tests.support.registry_server import classify_path

__all__ = [
    "CHAOS_KINDS",
    "FAULT_KINDS",
    "FaultProxy",
    "FaultRule",
    "ProxyRequest",
    "ProxyStats",
]

FAULT_KINDS = (
    "500",
    "502",
    "503",
    "429",
    "429-retry-after",
    "reset",
    "cut",
    "delay",
    "token-fail",
    "invalidate-token",
    "redirect",
    "cut-upload",
)
#: The mix used by convergence runs: everything a client must survive by retrying
#: (a `delay` needs a short client timeout, a `redirect` a place to redirect to).
CHAOS_KINDS = tuple(kind for kind in FAULT_KINDS if kind not in ("delay", "redirect", "cut-upload"))
_STATUS_KINDS = {"500": 500, "502": 502, "503": 503, "429": 429, "429-retry-after": 429}
_REASONS = {
    200: "OK",
    307: "Temporary Redirect",
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
_PIECE = 64 * 1024
_HEAD_LIMIT = 1024 * 1024
_REALM_PREFIX = "/_realm/"
_REALM_RE = re.compile(r'realm="(?P<scheme>https?)://(?P<netloc>[^/"]+)(?P<path>[^"]*)"')
_REPO_RE = re.compile(r"^/v2/(?P<repo>.+?)/(?:manifests|blobs|tags)/")
_UPLOAD_ID_RE = re.compile(r"/uploads/[^/]+$")
_UPLOAD_LOCATION_RE = re.compile(r"/blobs/uploads/(?P<id>[^/?]+)\?(?P<query>.*)$")
_MANIFEST_RE = re.compile(r"^/v2/(?P<repo>.+?)/manifests/(?P<ref>[^/?]+)$")
_REFERRERS_RE = re.compile(r"^/v2/(?P<repo>.+?)/referrers/(?P<ref>sha256:[0-9a-f]{64})$")
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class FaultRule:
    """Inject one of `kinds` into a share `rate` of the matching requests.

    Attributes:
        kinds: fault kinds to choose from (uniformly, among those that apply
            to the request: `cut` only to GETs (and is dropped if the answer
            is not a 2xx with a body), `invalidate-token` only to requests
            with a Bearer token that worked before, `token-fail` only to
            token requests, `redirect` only to blob GETs).
        rate: probability that a matching request is faulted.
        path: regex searched in the request path (with query), or None.
        repository: regex matched in full against the repository name, or None.
        methods: only these methods (None: any).
        endpoints: only these `classify_path` kinds (plus `token`), or None.
        limit: stop after this many injections (None: never).
        max_streak: never fault the same request (method, path with upload
            ids and `_state` left out) more than this many times in a row, so
            a retry of it eventually goes through, as transient faults do
            (None: independent draws).
        retry_after: the `Retry-After` value of `429-retry-after`.
        delay: seconds of `delay`.
        cut_fraction: share of the body `cut` lets through (at least 1 byte).
        cut_bytes: body bytes `cut` / `cut-upload` let through instead of a
            share; bodies no longer than this are not cut.
        redirect: `path -> absolute URL` for `redirect`.
    """

    kinds: Sequence[str] = CHAOS_KINDS
    rate: float = 1.0
    path: str | None = None
    repository: str | None = None
    methods: frozenset[str] | None = None
    endpoints: frozenset[str] | None = None
    limit: int | None = None
    max_streak: int | None = None
    retry_after: str = "1"
    delay: float = 2.0
    cut_fraction: float = 0.5
    cut_bytes: int | None = None
    redirect: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")

    def matches(self, request: _Request) -> bool:
        """Whether this rule considers `request` at all."""
        if self.methods is not None and request.method not in self.methods:
            return False
        if self.endpoints is not None and request.kind not in self.endpoints:
            return False
        if self.path is not None and not re.search(self.path, request.target):
            return False
        if self.repository is not None:
            return request.repository is not None and bool(
                re.fullmatch(self.repository, request.repository)
            )
        return True

    def allowance(self, length: int) -> int | None:
        """Body bytes a cut lets through of a `length`-byte body, or None to leave it whole."""
        if self.cut_bytes is not None:
            return self.cut_bytes if length > self.cut_bytes else None
        if length <= 1:
            return None
        return max(1, min(length - 1, int(length * self.cut_fraction)))

    def _cuts_upload(self, request: _Request) -> bool:
        if request.method not in ("PUT", "PATCH") or request.kind != "upload":
            return False
        length = request.header("content-length") or ""
        return length.isdigit() and self.allowance(int(length)) is not None

    def applicable(self, request: _Request) -> list[str]:
        """The kinds that make sense for `request`."""
        kinds = []
        for kind in self.kinds:
            if kind == "cut" and request.method != "GET":
                continue
            if kind == "cut-upload" and not self._cuts_upload(request):
                continue
            if kind == "invalidate-token" and not request.bearer:
                continue
            if kind == "token-fail" and request.kind != "token":
                continue
            if kind == "redirect" and not (request.method == "GET" and request.kind == "blob"):
                continue
            kinds.append(kind)
        return kinds


@dataclass
class ProxyRequest:
    """One request the proxy handled.

    Attributes:
        method / target / kind: request line and `classify_path` kind (`token`
            for requests to the token realm).
        started / ended: `time.monotonic()` when the head arrived / the
            response was finished (or abandoned).
        status: the status answered (None if the connection was reset first).
        fault: the fault injected, `upstream-error` when the registry
            connection failed on its own, or None.
        bytes_up: request body bytes forwarded so far.
        bytes_down: response body bytes sent so far.
        authorization: the scheme of the `Authorization` header (`basic`,
            `bearer`) or None; never the credentials.
    """

    method: str
    target: str
    kind: str
    started: float
    ended: float | None = None
    status: int | None = None
    fault: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    authorization: str | None = None


@dataclass
class ProxyStats:
    """Counters of everything the proxy saw (read them through `FaultProxy.snapshot()`)."""

    connections: int = 0
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    max_inflight: int = 0
    max_inflight_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    upstream_errors: int = 0

    @property
    def total_requests(self) -> int:
        """Every request received."""
        return sum(self.requests.values())

    @property
    def total_faults(self) -> int:
        """Every fault injected."""
        return sum(self.faults.values())

    def summary(self) -> str:
        """One line, quotable in a report."""
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        share = self.total_faults / self.total_requests if self.total_requests else 0.0
        return (
            f"{self.connections} connections, {self.total_requests} requests, "
            f"{self.total_faults} faults ({share:.1%}): {faults or 'none'}; "
            f"max in flight {self.max_inflight}; upstream errors {self.upstream_errors}"
        )


@dataclass
class _Request:
    """A parsed request head."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    kind: str
    repository: str | None
    upstream: tuple[str, int] | None  # None: the registry

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    @property
    def bearer(self) -> bool:
        return self.token is not None

    @property
    def token(self) -> str | None:
        """The Bearer token sent, if any."""
        value = self.header("authorization") or ""
        return value[7:] if value.lower().startswith("bearer ") else None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def streak_key(self) -> tuple[str, str]:
        """The request, the same across retries: upload ids and `_state` left out."""
        path, _, query = self.target.partition("?")
        path = _UPLOAD_ID_RE.sub("/uploads/*", path)
        params = sorted(p for p in query.split("&") if p and not p.startswith("_state="))
        return self.method, path + "?" + "&".join(params)


class _Reset(Exception):
    """Abort the client connection with a RST."""


class _NotHTTP(Exception):
    """The client sent something that is not HTTP (a TLS handshake)."""


class _ReadFailed(Exception):
    """The peer being read from closed or reset the connection."""


class _WriteFailed(Exception):
    """The peer being written to closed or reset the connection."""


class _Upstream:
    """One upstream connection (reader, writer) reused for successive requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class FaultProxy:
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
        resumable_uploads: keep upload state on the server's side (see the
            module docstring): cut uploads can be continued.
        monolithic_limit: 413 for an upload `PUT` with more body bytes (None: no limit).
        patch_limit: 416 for an upload `PATCH` with more body bytes (None: no limit).
        refuse_mounts: the status every mount request gets (None: mounts work).
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
    ):
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._upstream_tls = upstream_tls
        self._tls = tls
        self.rewrite_realm = rewrite_realm
        self.upload_rate = upload_rate
        self.download_rate = download_rate
        self.resumable_uploads = resumable_uploads
        self.monolithic_limit = monolithic_limit
        self.patch_limit = patch_limit
        self.refuse_mounts = refuse_mounts
        self._upload_states: dict[str, str] = {}  # upload id -> latest Location query
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = list(rules)
        self._used: Counter[int] = Counter()
        self._streaks: Counter[tuple[str, str]] = Counter()
        self._overrides: dict[tuple[str, str], tuple[bytes, str]] = {}
        self._extra_headers: list[tuple[FaultRule, dict[str, str]]] = []
        self.stats = ProxyStats()
        self.log: list[ProxyRequest] = []
        self._inflight: Counter[tuple[str, str]] = Counter()
        self._inflight_total = 0
        self._challenge: str | None = None
        self._tokens_seen: set[str] = set()
        self._revoked: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Bind a free loopback port and serve in a background thread."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._serve, "127.0.0.1", 0, ssl=self._tls, limit=_HEAD_LIMIT
                    )
                )
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then the loop (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, to write into images and auth files."""
        if self.port is None:
            raise RuntimeError("proxy is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        """`https` when the proxy terminates TLS, else `http`."""
        return "https" if self._tls is not None else "http"

    # -- controls ----------------------------------------------------------------------------

    def set_faults(self, *rules: FaultRule) -> None:
        """Replace the fault rules (the first rule that fires wins)."""
        with self._lock:
            self._rules = list(rules)
            self._used.clear()
            self._streaks.clear()

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
        with self._lock:
            s = self.stats
            return ProxyStats(
                s.connections,
                Counter(s.requests),
                Counter(s.faults),
                s.max_inflight,
                Counter(s.max_inflight_by),
                s.upstream_errors,
            )

    def requests(self) -> list[ProxyRequest]:
        """A copy of the request log, in arrival order."""
        with self._lock:
            return list(self.log)

    def active(self) -> list[ProxyRequest]:
        """Requests still in progress."""
        with self._lock:
            return [r for r in self.log if r.ended is None]

    # -- decisions ---------------------------------------------------------------------------

    def _decide(self, request: _Request) -> tuple[str, FaultRule | None] | None:
        token = request.token
        with self._lock:
            if token is not None and token in self._revoked:
                return "invalidate-token", None  # a revoked token stays revoked
            decision = self._draw(request, token)
            if token is not None:
                self._tokens_seen.add(token)
            if decision is not None and decision[0] == "invalidate-token":
                assert token is not None
                self._revoked.add(token)
            return decision

    def _draw(self, request: _Request, token: str | None) -> tuple[str, FaultRule] | None:
        key = request.streak_key
        for index, rule in enumerate(self._rules):
            if not rule.matches(request):
                continue
            if rule.limit is not None and self._used[index] >= rule.limit:
                continue
            if self._rng.random() >= rule.rate:
                continue
            if rule.max_streak is not None and self._streaks[key] >= rule.max_streak:
                continue
            kinds = rule.applicable(request)
            if token not in self._tokens_seen:
                # Revoke only a token that has worked before: a freshly issued
                # token refused at once is a real authentication failure.
                kinds = [k for k in kinds if k != "invalidate-token"]
            if not kinds:
                continue
            self._used[index] += 1
            self._streaks[key] += 1
            return self._rng.choice(kinds), rule
        self._streaks.pop(key, None)
        return None

    def _upstream_error(self, record: ProxyRequest) -> None:
        with self._lock:
            self.stats.upstream_errors += 1
            record.fault = record.fault or "upstream-error"

    def _release(self, request: _Request) -> None:
        """Undo the count of a `cut` that turned out not to apply (not a 2xx with a body)."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if "cut" in rule.kinds and rule.matches(request) and self._used[index] > 0:
                    self._used[index] -= 1
                    return

    def _begin(self, request: _Request) -> ProxyRequest:
        auth = request.header("authorization")
        record = ProxyRequest(
            request.method,
            request.target,
            request.kind,
            time.monotonic(),
            authorization=auth.split(" ", 1)[0].lower() if auth else None,
        )
        key = (request.method, request.kind)
        with self._lock:
            self.log.append(record)
            self.stats.requests[key] += 1
            self._inflight[key] += 1
            self._inflight_total += 1
            self.stats.max_inflight = max(self.stats.max_inflight, self._inflight_total)
            by = self.stats.max_inflight_by
            by[key] = max(by[key], self._inflight[key])
        return record

    def _end(self, request: _Request, record: ProxyRequest) -> None:
        with self._lock:
            record.ended = time.monotonic()
            self._inflight[(request.method, request.kind)] -= 1
            self._inflight_total -= 1

    def _count_fault(self, kind: str, record: ProxyRequest) -> None:
        with self._lock:
            record.fault = kind
            self.stats.faults[kind] += 1

    # -- connection handling --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        with self._lock:
            self.stats.connections += 1
        upstreams: dict[tuple[str, int] | None, _Upstream] = {}
        try:
            while await self._one_request(reader, writer, upstreams):
                pass
        except _Reset:
            _abort(writer)
        except _NotHTTP:
            writer.write(
                b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
            )
            with contextlib.suppress(Exception):
                await writer.drain()
        except (asyncio.CancelledError, Exception):  # any failure drops the client
            _abort(writer)
        finally:
            for upstream in upstreams.values():
                upstream.close()
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            first = await reader.readexactly(1)
            if first == b"\x16":
                # A TLS ClientHello on the plain port: refuse at once, as Go's
                # net/http does, so a client probing https falls back quickly.
                raise _NotHTTP
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed the connection between requests
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [_split_header(line) for line in lines[1:] if line]
        upstream: tuple[str, int] | None = None
        kind = classify_path(target)
        if target.startswith(_REALM_PREFIX):
            netloc, _, rest = target[len(_REALM_PREFIX) :].partition("/")
            host, _, port = netloc.rpartition(":")
            upstream, target, kind = (host, int(port)), "/" + rest, "token"
            headers = [(k, netloc if k.lower() == "host" else v) for k, v in headers]
        match = _REPO_RE.match(target.split("?", 1)[0])
        repository = match["repo"] if match and kind != "token" else None
        return _Request(method, target, version, headers, kind, repository, upstream)

    async def _one_request(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstreams: dict[tuple[str, int] | None, _Upstream],
    ) -> bool:
        request = await self._read_request(reader)
        if request is None:
            return False
        record = self._begin(request)
        try:
            return await self._handle(request, record, reader, writer, upstreams)
        finally:
            self._end(request, record)

    async def _handle(
        self,
        request: _Request,
        record: ProxyRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstreams: dict[tuple[str, int] | None, _Upstream],
    ) -> bool:
        if self.resumable_uploads:
            self._refresh_upload_state(request)
        if self._is_mount(request):
            self._count_fault("mount-refused", record)
            if self.refuse_mounts != 202:
                status = self.refuse_mounts or 0
                await self._answer(writer, record, status, {}, _error_body(status, "mount"))
                return True
            request.target = _without_mount(request.target)
        refusal = self._size_refusal(request)
        if refusal is not None:
            await _drain_body(request, reader, record)
            self._count_fault(refusal[1], record)
            body = _error_body(refusal[0], refusal[1])
            await self._answer(writer, record, refusal[0], {}, body)
            return True
        override = self._override_for(request)
        if override is not None:
            await _drain_body(request, reader, record)
            self._count_fault("garbage-manifest", record)
            body, media_type = override
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            headers = {
                "Content-Type": media_type,
                "Docker-Content-Digest": digest,
                "Content-Length": str(len(body)),
            }
            await self._answer(writer, record, 200, headers, body, head=request.method == "HEAD")
            return True
        decision = self._decide(request)
        kind, rule = decision if decision else (None, None)
        if kind == "reset":
            self._count_fault(kind, record)
            raise _Reset
        if kind in _STATUS_KINDS or kind in ("token-fail", "invalidate-token", "redirect"):
            await _drain_body(request, reader, record)
            self._count_fault(kind, record)
            status, headers = self._fault_response(kind, rule, request)
            body = _error_body(status, kind)
            await self._answer(writer, record, status, headers, body, head=request.method == "HEAD")
            return True
        if kind == "delay":
            assert rule is not None
            self._count_fault(kind, record)
            await asyncio.sleep(rule.delay)
        if kind == "cut-upload":
            assert rule is not None
            return await self._cut_upload(request, record, reader, upstreams, rule)
        cut = rule if kind == "cut" else None
        return await self._forward(request, record, reader, writer, upstreams, cut)

    def _override_for(self, request: _Request) -> tuple[bytes, str] | None:
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

    def _fault_response(
        self, kind: str, rule: FaultRule | None, request: _Request
    ) -> tuple[int, dict[str, str]]:
        if kind == "429-retry-after":
            assert rule is not None
            return 429, {"Retry-After": rule.retry_after}
        if kind in _STATUS_KINDS:
            return _STATUS_KINDS[kind], {}
        if kind == "token-fail":
            return 503, {}
        if kind == "redirect":
            assert rule is not None and rule.redirect is not None, "a redirect rule needs redirect="
            return 307, {"Location": rule.redirect(request.target)}
        # invalidate-token: the challenge a registry sends for a revoked token.
        with self._lock:
            challenge = self._challenge or 'Bearer realm="http://127.0.0.1:1/token"'
        base = re.sub(r',\s*scope="[^"]*"', "", challenge)
        base = re.sub(r',\s*error="[^"]*"', "", base)
        if request.repository is not None:
            actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
            base += f',scope="repository:{request.repository}:{actions}"'
        return 401, {"WWW-Authenticate": base + ',error="invalid_token"'}

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        record: ProxyRequest,
        status: int,
        headers: dict[str, str],
        body: bytes,
        *,
        head: bool = False,
    ) -> None:
        record.status = status
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        headers = {"Content-Length": str(len(body)), **headers}
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head:
            writer.write(body)
            record.bytes_down = len(body)
        await writer.drain()

    # -- forwarding ----------------------------------------------------------------------------

    async def _connect(
        self, request: _Request, upstreams: dict[tuple[str, int] | None, _Upstream]
    ) -> tuple[_Upstream, bool]:
        """The upstream connection for `request`, and whether it is a reused one."""
        existing = upstreams.get(request.upstream)
        if existing is not None and not existing.writer.is_closing():
            return existing, True
        host, port = request.upstream or self._upstream
        tls = self._upstream_tls if request.upstream is None else None
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, limit=_HEAD_LIMIT, server_hostname=host if tls else None
        )
        upstreams[request.upstream] = _Upstream(reader, writer)
        return upstreams[request.upstream], False

    def _request_head(self, request: _Request) -> bytes:
        headers = list(request.headers)
        if self._tls is not None and request.upstream is None:
            headers.append(("X-Forwarded-Proto", "https"))
        lines = [f"{request.method} {request.target} {request.version}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _forward(
        self,
        request: _Request,
        record: ProxyRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstreams: dict[tuple[str, int] | None, _Upstream],
        cut: FaultRule | None,
    ) -> bool:
        for attempt in (1, 2):
            try:
                upstream, reused = await self._connect(request, upstreams)
            except OSError:
                self._upstream_error(record)
                raise _Reset from None
            try:
                await _write(upstream.writer, self._request_head(request))
                await _copy_body(
                    request.headers, reader, upstream.writer, record, "up", rate=self.upload_rate
                )
            except _ReadFailed:  # the client gave up sending its body: pass that on
                upstreams.pop(request.upstream, None)
                upstream.close()
                raise _Reset from None
            except _WriteFailed:
                pass
            else:
                try:
                    status_line, headers = await _read_response_head(upstream.reader)
                    break
                except _ReadFailed:
                    pass
            upstreams.pop(request.upstream, None)
            upstream.close()
            if attempt == 1 and reused and not _has_body(request.headers):
                continue  # a keep-alive connection the registry closed meanwhile
            self._upstream_error(record)
            raise _Reset
        status = int(status_line.split(" ", 2)[1])
        record.status = status
        headers = self._rewrite_headers(request, headers)
        no_body = request.method == "HEAD" or status in (204, 304)
        length = _header(headers, "content-length")
        if cut is not None and not (
            200 <= status < 300
            and not no_body
            and length
            and cut.allowance(int(length)) is not None
        ):
            self._release(request)  # only content is cut: give the rule its turn back
            cut = None
        try:
            return await self._respond(request, record, writer, upstream, status_line, headers, cut)
        except (_ReadFailed, _WriteFailed) as exc:
            upstream.close()
            if isinstance(exc, _ReadFailed):  # the registry died mid-body
                self._upstream_error(record)
            raise _Reset from None  # either way the client sees its response cut

    async def _respond(
        self,
        request: _Request,
        record: ProxyRequest,
        writer: asyncio.StreamWriter,
        upstream: _Upstream,
        status_line: str,
        headers: list[tuple[str, str]],
        cut: FaultRule | None,
    ) -> bool:
        """Send the registry's response on (or cut it); True to keep the client connection."""
        no_body = request.method == "HEAD" or record.status in (204, 304)
        length = _header(headers, "content-length")
        await _write(writer, _response_head(status_line, headers))
        allowed = cut.allowance(int(length)) if cut is not None and length else None
        if allowed is not None:
            self._count_fault("cut", record)
            await _copy_exact(upstream.reader, writer, allowed, record, "down")
            upstream.close()
            return False  # close: the client sees a truncated body
        if not no_body and not await _copy_body(
            headers, upstream.reader, writer, record, "down", rate=self.download_rate
        ):
            upstream.close()  # the body ended with the connection
            return False
        if (_header(headers, "connection") or "").lower() == "close":
            upstream.close()
            return False
        return (request.header("connection") or "").lower() != "close"

    def _rewrite_headers(
        self, request: _Request, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        result = []
        for name, value in headers:
            if name.lower() == "www-authenticate" and value.lower().startswith("bearer"):
                value = self._rewrite_challenge(value)
            if name.lower() == "location":
                self._remember_upload_state(value)
            result.append((name, value))
        with self._lock:
            extra = [h for rule, h in self._extra_headers if rule.matches(request)]
        for added in extra:
            result.extend(added.items())
        return result

    def _rewrite_challenge(self, value: str) -> str:
        if self.rewrite_realm:
            registry = f"{self._upstream[0]}:{self._upstream[1]}"

            def replace(match: re.Match[str]) -> str:
                if match["netloc"] == registry:
                    return match.group(0)
                return f'realm="{self.scheme}://{self.host}{_REALM_PREFIX}{match["netloc"]}{match["path"]}"'

            value = _REALM_RE.sub(replace, value)
        with self._lock:
            self._challenge = value
        return value

    def _is_mount(self, request: _Request) -> bool:
        return (
            self.refuse_mounts is not None
            and request.method == "POST"
            and request.kind == "upload"
            and "mount=" in request.target
        )

    def _size_refusal(self, request: _Request) -> tuple[int, str] | None:
        """`(status, fault)` when an upload body is over this registry's limit."""
        if request.kind != "upload":
            return None
        length = request.header("content-length") or ""
        size = int(length) if length.isdigit() else None
        if "chunked" in (request.header("transfer-encoding") or "").lower():
            size = 1 << 62  # unknown length: over any limit
        if size is None or size == 0:
            return None
        limit = {"PUT": self.monolithic_limit, "PATCH": self.patch_limit}.get(request.method)
        if limit is None or size <= limit:
            return None
        return (413, "monolithic-limit") if request.method == "PUT" else (416, "patch-limit")

    # -- resumable uploads ------------------------------------------------------------------

    def _remember_upload_state(self, location: str) -> None:
        match = _UPLOAD_LOCATION_RE.search(location)
        if match is not None:
            with self._lock:
                self._upload_states[match["id"]] = match["query"]

    def _refresh_upload_state(self, request: _Request) -> None:
        """Give a request on an upload session the session's latest `_state`."""
        path, _, query = request.target.partition("?")
        match = _UPLOAD_LOCATION_RE.search(request.target)
        if match is None or "_state=" not in query:
            return
        with self._lock:
            latest = self._upload_states.get(match["id"])
        if latest is None:
            return
        others = [p for p in query.split("&") if p and not p.startswith("_state=")]
        fresh = [p for p in latest.split("&") if p.startswith("_state=")]
        request.target = path + "?" + "&".join(fresh + others)

    async def _cut_upload(
        self,
        request: _Request,
        record: ProxyRequest,
        reader: asyncio.StreamReader,
        upstreams: dict[tuple[str, int] | None, _Upstream],
        rule: FaultRule,
    ) -> bool:
        """Let part of an upload body reach the registry, then reset the client."""
        allowed = rule.allowance(int(request.header("content-length") or "0"))
        assert allowed is not None
        self._count_fault("cut-upload", record)
        try:
            upstream, _ = await self._connect(request, {})  # its own connection, closed below
        except OSError:
            self._upstream_error(record)
            raise _Reset from None
        try:
            head = self._kept_part_head(request, allowed) if self.resumable_uploads else None
            await _write(upstream.writer, head or self._request_head(request))
            await _copy_exact(reader, upstream.writer, allowed, record, "up")
            if head is not None:  # the registry answers the PATCH of the part it got
                _, headers = await _read_response_head(upstream.reader)
                self._rewrite_headers(request, headers)
        except (_ReadFailed, _WriteFailed):
            pass
        finally:
            upstream.close()
        raise _Reset

    def _kept_part_head(self, request: _Request, allowed: int) -> bytes:
        """A `PATCH` of the first `allowed` bytes of `request`'s body, to the same session."""
        path, _, query = request.target.partition("?")
        params = [p for p in query.split("&") if p and not p.startswith("digest=")]
        headers = [
            (k, v)
            for k, v in request.headers
            if k.lower() not in ("content-length", "content-range", "transfer-encoding")
        ]
        headers.append(("Content-Length", str(allowed)))
        lines = [f"PATCH {path}?{'&'.join(params)} {request.version}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- HTTP/1.1 plumbing -----------------------------------------------------------------------


def _split_header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _has_body(headers: Sequence[tuple[str, str]]) -> bool:
    if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
        return True
    return (_header(headers, "content-length") or "0").strip() not in ("", "0")


def _response_head(status_line: str, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [status_line, *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]]:
    head = await _read_until(reader, b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], [_split_header(line) for line in lines[1:] if line]


async def _read(reader: asyncio.StreamReader, size: int) -> bytes:
    try:
        piece = await reader.read(size)
    except (ConnectionError, OSError) as exc:
        raise _ReadFailed from exc
    return piece


async def _read_until(reader: asyncio.StreamReader, separator: bytes) -> bytes:
    try:
        return await reader.readuntil(separator)
    except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise _ReadFailed from None


async def _write(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is None:
        return
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionError, OSError) as exc:
        raise _WriteFailed from exc


async def _copy_exact(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    size: int,
    record: ProxyRequest,
    direction: str,
    *,
    rate: float | None = None,
) -> None:
    remaining = size
    while remaining > 0:
        piece = await _read(reader, min(_PIECE, remaining))
        if not piece:
            raise _ReadFailed
        remaining -= len(piece)
        if direction == "up":
            record.bytes_up += len(piece)
        else:
            record.bytes_down += len(piece)
        await _write(writer, piece)
        if rate:
            await asyncio.sleep(len(piece) / rate)


async def _copy_chunked(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    record: ProxyRequest,
    direction: str,
    rate: float | None,
) -> None:
    """Pass a chunked body through unchanged (chunk framing included)."""
    while True:
        line = await _read_until(reader, b"\r\n")
        await _write(writer, line)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = await _read_until(reader, b"\r\n")
                await _write(writer, trailer)
                if trailer == b"\r\n":
                    return
        await _copy_exact(reader, writer, size, record, direction, rate=rate)
        await _write(writer, await _read_until(reader, b"\r\n"))


async def _copy_body(
    headers: Sequence[tuple[str, str]],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    record: ProxyRequest,
    direction: str,
    *,
    rate: float | None = None,
) -> bool:
    """Copy a message body framed by `headers`; False when it was delimited by EOF.

    Raises:
        _ReadFailed: the side being read from went away.
        _WriteFailed: the side being written to went away.
    """
    if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
        await _copy_chunked(reader, writer, record, direction, rate)
        return True
    length = _header(headers, "content-length")
    if length is not None:
        await _copy_exact(reader, writer, int(length), record, direction, rate=rate)
        return True
    if direction == "up":
        return True  # a request without framing has no body
    while piece := await _read(reader, _PIECE):
        record.bytes_down += len(piece)
        await _write(writer, piece)
    return False


async def _drain_body(
    request: _Request, reader: asyncio.StreamReader, record: ProxyRequest
) -> None:
    """Read and drop a request body the proxy answers itself."""
    await _copy_body(request.headers, reader, None, record, "up")


def _without_mount(target: str) -> str:
    path, _, query = target.partition("?")
    kept = [p for p in query.split("&") if p and not p.startswith(("mount=", "from="))]
    return path + ("?" + "&".join(kept) if kept else "")


def _error_body(status: int, kind: str) -> bytes:
    code = {
        429: "TOOMANYREQUESTS",
        401: "UNAUTHORIZED",
        403: "DENIED",
        404: "BLOB_UNKNOWN",
        413: "SIZE_INVALID",
        416: "BLOB_UPLOAD_INVALID",
    }.get(status, "UNAVAILABLE")
    if status == 307:
        return b""
    return f'{{"errors":[{{"code":"{code}","message":"injected fault {kind}"}}]}}'.encode()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Reset the connection: RST instead of an orderly FIN."""
    sock: socket.socket | None = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
