"""`RegistryClient`: the Docker Registry V2 / OCI distribution operations a syncer needs.

One client per registry (and credential set); it is thread-safe and pools
connections. Contracts, in the style of containers/image `types.go`:

- `head_*` return None when the object is absent and raise only on
  unexpected failures; `get_*`/`put_*` raise `NotFoundError` when absent.
- Manifests are returned and pushed as exact bytes (`RawManifest`); a GET by
  digest is verified against that digest.
- Blobs are never held in memory: `open_blob` streams, `push_blob` consumes
  an iterator and verifies its digest while sending; a mismatch raises
  `DigestMismatchError`, the upload session is cancelled and nothing is
  committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import httpx

from syncer_core.digest import compute_digest, is_digest
from syncer_core.errors import DigestMismatchError, RegistryError, TransientRegistryError
from syncer_core.manifest import MAX_MANIFEST_BYTES, RawManifest, detect_media_type
from syncer_core.mediatypes import MANIFEST_ACCEPT, SCHEMA1_TYPES
from syncer_core.reference import DOCKER_HUB, DOCKER_HUB_API
from syncer_core.registry.access import RegistryAccess
from syncer_core.registry.auth import SCOPE_EXTENSION, RegistryAuth
from syncer_core.registry.blobreader import range_opener
from syncer_core.registry.http import ClientOptions, build_http_client
from syncer_core.registry.negotiation import UploadPlan
from syncer_core.registry.ratelimit import RateLimitGate
from syncer_core.registry.responses import (
    error_from_transport,
    is_https_port_answer,
    is_plaintext_peer,
    raise_for_status,
    schema1_push_error,
)
from syncer_core.registry.retry import RetryPolicy, call_with_retries
from syncer_core.registry.types import BlobStream, ManifestHead
from syncer_core.registry.upload_feed import MemoryBlob
from syncer_core.registry.uploads import BlobUploader, MountResult

__all__ = ["BlobStream", "ManifestHead", "MountResult", "RegistryClient"]

T = TypeVar("T")
_PROBE_TIMEOUT = httpx.Timeout(5.0)


class RegistryClient:
    """Talk to one registry.

    Args:
        registry: normalised registry host[:port] (`docker.io` for Docker Hub).
        access: credentials and TLS settings; anonymous and verified by default.
        options: transport knobs (pool size, timeouts, chunk sizes).
        retry: request-level retry policy for idempotent requests.
        transport: replacement httpx transport (protocol tests).
    """

    def __init__(
        self,
        registry: str,
        *,
        access: RegistryAccess | None = None,
        options: ClientOptions | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.registry = registry
        self.access = access or RegistryAccess()
        self.options = options or ClientOptions()
        self.retry = retry or RetryPolicy()
        self._auth = RegistryAuth(self.access, registry)
        self._http = build_http_client(self.access, self.options, self._auth, transport)
        self._base: httpx.URL | None = None
        self._lock = threading.Lock()
        self._uploader = BlobUploader(self)
        self._rate_gate = RateLimitGate(max_pause=self.retry.max_retry_after)

    # -- plumbing ---------------------------------------------------------------

    @property
    def host(self) -> str:
        """The host actually contacted (`registry-1.docker.io` for Docker Hub)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def base_url(self) -> httpx.URL:
        """`https://host`, or `http://host` for an insecure registry without TLS."""
        with self._lock:
            if self._base is None:
                self._base = self._resolve_base_url()
                self._auth.bind_origin(self._base)
            return self._base

    def _resolve_base_url(self) -> httpx.URL:
        """`https://`, or `http://` only once its port proved to speak plain HTTP.

        An insecure registry is probed: a short HTTPS `GET /v2/` (a plain-HTTP
        port may accept TCP and never answer TLS). Plain HTTP is chosen when
        the TLS handshake met plain-HTTP bytes (`WRONG_VERSION_NUMBER`), or,
        after any other failure, when the port answers `GET /v2/` over plain
        HTTP other than as a TLS port does ("HTTP request to an HTTPS
        server"). Otherwise (a slow first handshake, a timeout) the failure
        is raised as transient and nothing is remembered: the next call
        probes again.
        """
        https = httpx.URL(f"https://{self.host}/")
        if not self.access.insecure:
            return https
        try:
            self._http.get(https.join("/v2/"), auth=None, timeout=_PROBE_TIMEOUT).close()
        except httpx.TransportError as exc:
            plain = httpx.URL(f"http://{self.host}/")
            if is_plaintext_peer(exc) or self._speaks_plain_http(plain):
                return plain
            raise TransientRegistryError(
                f"HTTPS probe: {self.registry} unreachable ({type(exc).__name__}: {exc}), "
                "and its port does not answer plain HTTP",
                registry=self.registry,
            ) from exc
        return https

    def _speaks_plain_http(self, plain: httpx.URL) -> bool:
        """Whether `GET /v2/` over plain HTTP gets an answer that is not a TLS port's."""
        try:
            response = self._http.get(plain.join("/v2/"), auth=None, timeout=_PROBE_TIMEOUT)
        except httpx.HTTPError:
            return False
        return not is_https_port_answer(response, response.content)

    def url(self, path: str) -> httpx.URL:
        """Resolve a path (or an absolute URL, e.g. an upload Location) against the base."""
        return self.base_url.join(path)

    def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        what: str,
        ok: Iterable[int] = (),
        stream: bool = False,
        scopes: tuple[str, ...] = (),
        follow_redirects: bool = False,
        **kwargs: object,
    ) -> httpx.Response:
        """Send one request; map failures to `RegistryError`s.

        Statuses in `ok` are returned without raising (e.g. 404 for a HEAD).
        With `stream=True` the body is not read; the caller must close it.
        """
        target = self.url(str(url))
        counted = "/manifests/" in target.path
        if counted:
            self._rate_gate.wait()
        extensions = {SCOPE_EXTENSION: scopes} if scopes else None
        request = self._http.build_request(method, target, extensions=extensions, **kwargs)  # type: ignore[arg-type]
        try:
            response = self._http.send(request, stream=True, follow_redirects=follow_redirects)
        except httpx.HTTPError as exc:
            raise error_from_transport(
                exc, registry=self.registry, what=what, insecure=self.access.insecure
            ) from exc
        if counted:
            self._rate_gate.observe(response)
        if response.status_code in set(ok) or response.is_success:
            if not stream:
                self._read(response, what)
            return response
        raise_for_status(response, registry=self.registry, what=what, secrets=self.access.secrets())
        return response  # pragma: no cover - raise_for_status raised

    def _read(self, response: httpx.Response, what: str) -> None:
        try:
            response.read()
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, registry=self.registry, what=what) from exc
        finally:
            response.close()

    def retrying(self, operation: Callable[[], T]) -> T:
        """Run an idempotent operation under the retry policy."""
        return call_with_retries(operation, self.retry)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- operations -------------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry speaks V2 and that our credentials are accepted."""
        self.retrying(lambda: self.send("GET", "/v2/", what="ping"))

    def list_tags(self, repository: str) -> list[str]:
        """All tags of a repository, following `Link` pagination, sorted.

        Raises:
            NotFoundError: the repository does not exist.
        """
        tags: set[str] = set()
        url: str | None = f"/v2/{repository}/tags/list"
        pages = 0
        while url is not None and pages < 10_000:
            response = self._get_tag_page(repository, url)
            doc = _json_object(response, f"tag list of {repository}", self.registry)
            listed = doc.get("tags") or []
            if isinstance(listed, list):
                tags.update(t for t in listed if isinstance(t, str))
            url = _next_link(response)
            pages += 1
        return sorted(tags)

    def _get_tag_page(self, repository: str, url: str) -> httpx.Response:
        return self.retrying(lambda: self.send("GET", url, what=f"list tags of {repository}"))

    def head_manifest(self, repository: str, reference: str) -> ManifestHead | None:
        """HEAD a manifest by tag or digest; None when absent.

        A HEAD does not count against Docker Hub's pull quota, a GET does.
        """
        what = f"HEAD manifest {repository}:{reference}"
        response = self.retrying(
            lambda: self.send(
                "HEAD",
                f"/v2/{repository}/manifests/{reference}",
                what=what,
                ok=(404,),
                headers={"Accept": MANIFEST_ACCEPT},
            )
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("docker-content-digest")
        if digest is None and is_digest(reference):
            digest = reference
        length = response.headers.get("content-length")
        return ManifestHead(
            digest=digest if digest and is_digest(digest) else None,
            media_type=response.headers.get("content-type", "").split(";")[0].strip(),
            size=int(length) if length and length.isdigit() else None,
        )

    def get_manifest(self, repository: str, reference: str) -> RawManifest:
        """GET a manifest's exact bytes; verified when fetched by digest."""
        what = f"GET manifest {repository}:{reference}"

        def fetch() -> tuple[httpx.Response, bytes]:
            # The body is read inside the retried operation: a connection cut
            # mid-body is as transient as one cut before the headers.
            response = self.send(
                "GET",
                f"/v2/{repository}/manifests/{reference}",
                what=what,
                stream=True,
                headers={"Accept": MANIFEST_ACCEPT},
            )
            return response, self._read_capped(response, what)

        response, data = self.retrying(fetch)
        media_type = detect_media_type(data, response.headers.get("content-type"))
        manifest = RawManifest(media_type, data)
        claimed = response.headers.get("docker-content-digest")
        expected = reference if is_digest(reference) else claimed
        _verify(manifest, expected, what=f"manifest {repository}")
        return manifest

    def _read_capped(self, response: httpx.Response, what: str) -> bytes:
        data = bytearray()
        try:
            for chunk in response.iter_bytes():
                data.extend(chunk)
                if len(data) > MAX_MANIFEST_BYTES:
                    raise RegistryError(
                        f"{what}: manifest larger than {MAX_MANIFEST_BYTES} bytes",
                        registry=self.registry,
                    )
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, registry=self.registry, what=what) from exc
        finally:
            response.close()
        return bytes(data)

    def put_manifest(self, repository: str, reference: str, manifest: RawManifest) -> str:
        """PUT exact manifest bytes under a tag or digest; returns the digest.

        Raises:
            ManifestRejectedError: the registry refused it (e.g. blobs missing).
            DigestMismatchError: the registry stored it under another digest.
        """
        if is_digest(reference):
            _verify(manifest, reference, what=f"manifest {repository}")
        what = f"PUT manifest {repository}:{reference}"

        def put() -> httpx.Response:
            try:
                return self.send(
                    "PUT",
                    f"/v2/{repository}/manifests/{reference}",
                    what=what,
                    content=manifest.data,
                    headers={"Content-Type": manifest.media_type},
                )
            except RegistryError as error:
                if manifest.media_type in SCHEMA1_TYPES:
                    raise schema1_push_error(error) from error
                raise

        response = self.retrying(put)
        stored = response.headers.get("docker-content-digest")
        if stored and is_digest(stored) and not manifest.matches(stored):
            algorithm = stored.partition(":")[0]
            raise DigestMismatchError(
                manifest.digest_as(algorithm), stored, what=f"stored manifest {repository}"
            )
        return manifest.digest

    def head_blob(self, repository: str, digest: str) -> int | None:
        """The blob's size if the repository has it, else None."""
        what = f"HEAD blob {repository}@{digest}"
        response = self.retrying(
            lambda: self.send(
                "HEAD",
                f"/v2/{repository}/blobs/{digest}",
                what=what,
                ok=(404,),
                follow_redirects=True,
            )
        )
        if response.status_code == 404:
            return None
        length = response.headers.get("content-length", "")
        return int(length) if length.isdigit() else 0

    @contextmanager
    def open_blob(self, repository: str, digest: str) -> Iterator[BlobStream]:
        """Stream a blob (redirects followed; credentials never leave the origin).

        The stream resumes itself with `Range` after a cut (`BlobStream`).
        """
        what = f"GET blob {repository}@{digest}"
        open_at = range_opener(self, f"/v2/{repository}/blobs/{digest}", what)
        stream = BlobStream(
            open_at(0, None),
            digest,
            self.options.chunk_size,
            self.registry,
            what,
            reopen=open_at,
            max_resumes=self.options.max_resumes,
        )
        try:
            yield stream
        finally:
            stream.close()

    @property
    def upload_plan(self) -> UploadPlan:
        """How this registry takes blob uploads, as learned so far (see `negotiation`)."""
        return self._uploader.plan

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> MountResult:
        """Cross-repository mount; on 202 the opened upload session is returned for reuse."""
        return self._uploader.mount(repository, digest, from_repository)

    def cancel_upload(self, upload_url: str) -> None:
        """Abandon an upload session (best effort)."""
        self._uploader.cancel(upload_url)

    def push_blob(
        self,
        repository: str,
        digest: str,
        chunks: Iterable[bytes],
        *,
        size: int | None,
        upload_url: str | None = None,
        rewind: Callable[[int], None] | None = None,
    ) -> None:
        """Upload a blob from an iterator, verifying `digest` (and `size`) as it streams.

        `rewind(offset)` makes `chunks` continue from an earlier offset (a
        `BlobStream`'s `rewind`, through any pass-through stages): with it a
        cut upload resumes instead of failing.
        """
        self._uploader.push(
            repository, digest, chunks, size=size, upload_url=upload_url, rewind=rewind
        )

    def push_blob_bytes(self, repository: str, data: bytes) -> str:
        """Upload a small in-memory blob (configs, test data); returns its digest."""
        digest = compute_digest(data)
        if self.head_blob(repository, digest) is None:
            blob = MemoryBlob(data)
            self.push_blob(repository, digest, blob, size=len(data), rewind=blob.rewind)
        return digest


def _verify(manifest: RawManifest, expected: str | None, *, what: str) -> None:
    """Check a manifest against the digest it was fetched or pushed under (any algorithm)."""
    if expected is None or not is_digest(expected):
        return  # no digest claimed (or one we cannot check): nothing to compare with
    if not manifest.matches(expected):
        actual = manifest.digest_as(expected.partition(":")[0])
        raise DigestMismatchError(expected, actual, what=what)


def _json_object(response: httpx.Response, what: str, registry: str) -> Mapping[str, object]:
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what}: {registry} returned no JSON object", registry=registry)
    return doc


def _next_link(response: httpx.Response) -> str | None:
    """The `rel="next"` target of a `Link` header, resolved against the request URL."""
    for link in response.headers.get_list("link"):
        for part in link.split(","):
            target, _, params = part.partition(";")
            if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
                return str(response.request.url.join(target.strip().strip("<>")))
    return None
