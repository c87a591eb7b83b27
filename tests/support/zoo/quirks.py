"""Quirks of named registries that distribution 2.8 does not have, played by the relay.

Each knob is off by default; `profiles.py` says which registry has which,
with its sources. Every quirk the relay answers with is counted as a fault
of its name in `ProxyStats.faults`, so a test can assert it was exercised:

- `catalog=False`: `/v2/_catalog` → 401 `UNAUTHORIZED` with a challenge for
  scope `registry:catalog:*`, `error="insufficient_scope"` once a token
  was sent: no token ever grants it, as on Docker Hub (`no-catalog`);
- `tag_page=N`: tag lists at most N per page, `Link` to the next (`tag-page`);
- `max_tag_page=N`: `n` above N on a tag list → 400 (`tag-page-too-large`);
- `ratelimit=N`: `ratelimit-limit` / `ratelimit-remaining` on manifest GETs;
- `repositories=S`: a write to a repository not in S → 404 `NAME_UNKNOWN`
  (`name-unknown`);
- `stale_patch_range`: a `PATCH` answers 201 with the `Range` of the
  session's first `PATCH` (`stale-range` not counted: it is every PATCH);
- `mount_needs_from`: a mount without `from` → 400 (`mount-without-from`);
- `projects=S`: a mount `from` a project (first path part) not in S → 401
  (`mount-no-project`);
- `reject_schema1`: a schema1 manifest `PUT` → 400 `MANIFEST_INVALID`
  (`schema1-rejected`);
- `no_patch`: any upload `PATCH` → 405 `UNSUPPORTED` (`patch-refused`);
- `storage=origin`: a blob GET the registry would serve → 307 to
  `origin.presign(...)` (`storage-redirect`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from tests.support.zoo import wire
from tests.support.zoo.cdn import CdnOrigin
from tests.support.zoo.stats import ProxyRequest
from tests.support.zoo.uploads import upload_id
from tests.support.zoo.wire import Answer, Request

if TYPE_CHECKING:
    from tests.support.zoo.relay import FaultProxy

__all__ = ["Quirks"]

_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Quirks:
    """The behaviours of one registry (see the module docstring for each knob)."""

    catalog: bool = True
    tag_page: int | None = None
    max_tag_page: int | None = None
    ratelimit: int | None = None
    repositories: frozenset[str] | None = None
    stale_patch_range: bool = False
    mount_needs_from: bool = False
    projects: frozenset[str] | None = None
    reject_schema1: bool = False
    no_patch: bool = False
    storage: CdnOrigin | None = None
    registry_id: str = "123456789012"
    _first_ranges: dict[str, str] = field(default_factory=dict, repr=False)
    _manifest_gets: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refusal(self, request: Request) -> Answer | None:
        """An answer the registry gives instead of serving `request`, or None."""
        if request.kind == "tags" and self.max_tag_page is not None:
            n = _param(request, "n")
            if n is not None and n.isdigit() and int(n) > self.max_tag_page:
                message = f"Invalid parameter at 'maxResults' failed to satisfy constraint: {n}"
                return Answer(400, "tag-page-too-large", wire.error_body(400, "", message=message))
        repository = request.repository
        known = self.repositories
        if (
            request.method in _WRITES
            and repository
            and known is not None
            and repository not in known
        ):
            message = (
                f"The repository with name '{repository}' does not exist in the "
                f"registry with id '{self.registry_id}'"
            )
            body = wire.error_body(404, "", code="NAME_UNKNOWN", message=message)
            return Answer(404, "name-unknown", body)
        return self._upload_refusal(request)

    def _upload_refusal(self, request: Request) -> Answer | None:
        media_type = (request.header("content-type") or "").split(";")[0].strip()
        put_manifest = request.kind == "manifest" and request.method == "PUT"
        if put_manifest and self.reject_schema1 and media_type in _SCHEMA1:
            message = "manifest schema version 1 is not supported"
            body = wire.error_body(400, "", code="MANIFEST_INVALID", message=message)
            return Answer(400, "schema1-rejected", body)
        if request.kind != "upload":
            return None
        if request.method == "PATCH" and self.no_patch:
            message = "chunked upload is not supported"
            return Answer(405, "patch-refused", wire.error_body(405, "", message=message))
        mount = request.method == "POST" and _param(request, "mount") is not None
        source = _param(request, "from")
        if mount and self.mount_needs_from and not source:
            return Answer(400, "mount-without-from", wire.error_body(400, "", code="UNSUPPORTED"))
        projects = self.projects
        if mount and projects is not None and source and source.split("/", 1)[0] not in projects:
            body = wire.error_body(401, "", message="project not found")
            return Answer(401, "mount-no-project", body)
        return None

    def response(
        self, request: Request, status: int, headers: list[tuple[str, str]]
    ) -> tuple[int, list[tuple[str, str]]]:
        """The registry's answer to `request` as this registry would give it."""
        if self.ratelimit is not None and request.kind == "manifest" and request.method == "GET":
            with self._lock:
                self._manifest_gets += 1
                left = max(0, self.ratelimit - self._manifest_gets)
            headers = [
                *headers,
                ("ratelimit-limit", f"{self.ratelimit};w=21600"),
                ("ratelimit-remaining", f"{left};w=21600"),
            ]
        if self.stale_patch_range and request.method == "PATCH" and status == 202:
            return 201, self._stale_range(request, headers)
        return status, headers

    def _stale_range(
        self, request: Request, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Keep the `Range` of the session's first `PATCH` (aws/containers-roadmap #2831)."""
        session = upload_id(request.target) or ""
        real = wire.header(headers, "range") or ""
        with self._lock:
            first = self._first_ranges.setdefault(session, real)
        return [(k, first if k.lower() == "range" else v) for k, v in headers]

    async def serve(
        self,
        proxy: FaultProxy,
        request: Request,
        record: ProxyRequest,
        writer: asyncio.StreamWriter,
    ) -> bool | None:
        """Serve `request` another way than forwarding it (None: forward it)."""
        if request.kind == "catalog" and not self.catalog:
            await _refuse_catalog(proxy, request, record, writer)
            return True
        if request.kind == "tags" and request.method == "GET" and self.tag_page is not None:
            await self._tag_page(proxy, request, record, writer, self.tag_page)
            return True
        if request.kind == "blob" and request.method == "GET" and self.storage is not None:
            await self._redirect_blob(proxy, request, record, writer, self.storage)
            return True
        return None

    async def _tag_page(
        self,
        proxy: FaultProxy,
        request: Request,
        record: ProxyRequest,
        writer: asyncio.StreamWriter,
        page: int,
    ) -> None:
        """A page of at most `page` tags after `last`, with a `Link` when more follow."""
        status, headers, body = await proxy.fetch(request, _without_paging(request).head())
        if status != 200:
            kept = {k: v for k, v in headers if k.lower() == "www-authenticate"}
            await wire.answer(writer, record, status, kept, body)
            return
        document = json.loads(body)
        tags = sorted(document.get("tags") or [])
        last = _param(request, "last")
        if last is not None:
            tags = [t for t in tags if t > last]
        n = _param(request, "n")
        size = min(page, int(n)) if n and n.isdigit() and int(n) > 0 else page
        shown, more = tags[:size], len(tags) > size
        extra = {"Content-Type": "application/json"}
        if more:
            proxy.counters.fault("tag-page", record)
            extra["Link"] = f'<{request.path}?last={quote(shown[-1])}&n={size}>; rel="next"'
        text = json.dumps({"name": document.get("name"), "tags": shown}).encode()
        await wire.answer(writer, record, 200, extra, text)

    async def _redirect_blob(
        self,
        proxy: FaultProxy,
        request: Request,
        record: ProxyRequest,
        writer: asyncio.StreamWriter,
        storage: CdnOrigin,
    ) -> None:
        """307 to storage when the registry would serve the blob; else its refusal."""
        status, headers, _ = await proxy.fetch(request, proxy.client_head_as(request, "HEAD"))
        if status != 200:
            kept = {k: v for k, v in headers if k.lower() == "www-authenticate"}
            await wire.answer(writer, record, status, kept, wire.error_body(status, "blob"))
            return
        location = storage.presign(request.path, request.header("authorization"))
        proxy.counters.fault("storage-redirect", record)
        await wire.answer(writer, record, 307, {"Location": location}, b"")


async def _refuse_catalog(
    proxy: FaultProxy, request: Request, record: ProxyRequest, writer: asyncio.StreamWriter
) -> None:
    """Docker Hub's answer to `/v2/_catalog`: 401 whether or not a token was sent.

    The challenge is the registry's own for an anonymous catalog request
    (realm, service, `scope="registry:catalog:*"`); with a token it adds
    `error="insufficient_scope"`: the token service issues a token for that
    scope, the registry still refuses it (genuinetools/reg #86,
    docker/hub-feedback #2094).
    """
    anonymous = [(k, v) for k, v in request.headers if k.lower() != "authorization"]
    probe = Request("GET", request.target, request.version, anonymous, request.kind, None, None)
    status, headers, _ = await proxy.fetch(probe, probe.head())
    _, headers = proxy.rewrite_response(probe, status, headers)
    extra: dict[str, str] = {"Content-Type": "application/json"}
    challenge = wire.header(headers, "www-authenticate")
    if challenge and challenge.lower().startswith("bearer"):
        scoped = challenge if request.token is None else challenge + ',error="insufficient_scope"'
        extra["Www-Authenticate"] = scoped
    detail = [{"Type": "registry", "Class": "", "Name": "catalog", "Action": "*"}]
    error = {"code": "UNAUTHORIZED", "message": "authentication required", "detail": detail}
    proxy.counters.fault("no-catalog", record)
    body = json.dumps({"errors": [error]}).encode() + b"\n"
    await wire.answer(writer, record, 401, extra, body, head=request.method == "HEAD")


def _param(request: Request, name: str) -> str | None:
    prefix = name + "="
    return next((p[len(prefix) :] for p in request.query if p.startswith(prefix)), None)


def _without_paging(request: Request) -> Request:
    """The same tag-list request asking for every tag (distribution 2.8 answers them all)."""
    kept = [p for p in request.query if not p.startswith(("n=", "last="))]
    target = request.path + ("?" + "&".join(kept) if kept else "")
    return Request(
        request.method,
        target,
        request.version,
        request.headers,
        request.kind,
        request.repository,
        request.upstream,
    )
