"""Blob uploads: cross-repository mount, streamed monolithic PUT, chunked PATCH.

The flows (distribution-spec "Pushing blobs"):

- mount: `POST /v2/<dst>/blobs/uploads/?mount=<d>&from=<src>` → 201 mounted,
  or 202 with an upload session we hand back for reuse;
- stream: `POST .../uploads/` → 202 `Location`, then one
  `PUT <Location>&digest=<d>` whose body is the stream, with an explicit
  `Content-Length` (no chunked transfer encoding; some registries stall on it);
- chunked (opt-in, `ClientOptions.upload_chunk_size`): `PATCH` each chunk with
  `Content-Range` to the latest `Location`, then `PUT ...&digest=` empty;
- resumed (after a cut, `resumable_upload`): `GET <Location>` for the offset,
  `PATCH` the rest from there, then `PUT ...&digest=` empty.

The `Location` already carries a query (`?_state=...` on distribution): the
digest is appended, never replacing it. On any failure the session is
cancelled with `DELETE` (best effort) so nothing partial lingers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from syncer_core.errors import (
    AuthenticationError,
    RegistryError,
    TransientRegistryError,
)
from syncer_core.registry.negotiation import UploadPlan
from syncer_core.registry.resumable_upload import ResumableUpload
from syncer_core.registry.upload_feed import UploadFeed

if TYPE_CHECKING:
    from syncer_core.registry.client import RegistryClient

__all__ = ["MOUNT_REFUSALS", "BlobUploader", "MountResult"]

#: Mounts refused in a row (and none ever fulfilled) after which a registry gets no more.
MOUNT_REFUSALS = 3


@dataclass(frozen=True)
class MountResult:
    """Outcome of a mount attempt.

    Attributes:
        mounted: the blob now exists in the destination repository.
        upload_url: when not mounted, the upload session the registry opened
            instead (pass it to `push_blob(upload_url=...)` or cancel it).
    """

    mounted: bool
    upload_url: str | None = None


class BlobUploader:
    """Upload and mount blobs through a `RegistryClient`'s plumbing."""

    def __init__(self, client: RegistryClient):
        self._client = client
        configured = client.access.chunk_size or client.options.upload_chunk_size
        self.plan = UploadPlan(configured)
        self._mounted_once = False
        self._mount_refusals = 0
        self._mount_lock = threading.Lock()

    @property
    def client(self) -> RegistryClient:
        """The client whose plumbing uploads go through."""
        return self._client

    def location(self, response: httpx.Response, what: str) -> str:
        """The absolute upload URL a response points to (always use the latest)."""
        location = response.headers.get("location")
        if not location:
            raise RegistryError(
                f"{what}: registry sent no upload Location",
                registry=self._client.registry,
                status_code=response.status_code,
            )
        return str(response.request.url.join(location))

    def start(self, repository: str) -> str:
        """Open an upload session (body-less, so it also primes the push token)."""
        what = f"start upload to {repository}"
        client = self._client
        response = client.retrying(
            lambda: client.send(
                "POST",
                f"/v2/{repository}/blobs/uploads/",
                what=what,
                headers={"Content-Length": "0"},
            )
        )
        self.plan.announce_min_chunk(response.headers.get("oci-chunk-min-length"))
        return self.location(response, what)

    @property
    def mounts_refused(self) -> bool:
        """Whether this registry refuses mounts: `MOUNT_REFUSALS` in a row, none ever worked.

        Docker Hub refuses cross-repository mounts (go-containerregistry
        #1741), GAR never fulfils them, Harbor answers 401 for a project it
        does not have (#17097): once a registry has shown that, no more mount
        requests are spent on it.
        """
        return not self._mounted_once and self._mount_refusals >= MOUNT_REFUSALS

    def mount(self, repository: str, digest: str, from_repository: str) -> MountResult:
        """Try a cross-repository mount of `digest` from `from_repository`.

        A mount is an optimisation, so any failure means "not mounted" and
        the caller uploads instead: 401/403/404 (our credential may not pull
        from that repository, or it is gone), any other refusal, a registry
        still failing after the retries, a 202 without a session; a real lack
        of push access shows in the upload.
        """
        if self.mounts_refused:
            return MountResult(mounted=False)
        # A mount still failing after retries (5xx included) counts as a refusal too:
        # registries that never fulfil mounts answer that way.
        result = self._request_mount(repository, digest, from_repository)
        with self._mount_lock:  # mounts run on the session's blob pool
            if result.mounted:
                self._mounted_once = True
            else:
                self._mount_refusals += 1
        return result

    def _request_mount(self, repository: str, digest: str, from_repository: str) -> MountResult:
        what = f"mount {digest} from {from_repository} into {repository}"
        client = self._client
        try:
            response = client.retrying(
                lambda: client.send(
                    "POST",
                    f"/v2/{repository}/blobs/uploads/",
                    what=what,
                    params={"mount": digest, "from": from_repository},
                    headers={"Content-Length": "0"},
                    scopes=(f"repository:{from_repository}:pull",),
                )
            )
        except RegistryError:
            return MountResult(mounted=False)
        if response.status_code == 201:
            return MountResult(mounted=True)
        location = response.headers.get("location")
        if response.status_code != 202 or not location:
            return MountResult(mounted=False)  # no usable session: the upload opens its own
        return MountResult(mounted=False, upload_url=str(response.request.url.join(location)))

    def cancel(self, upload_url: str) -> None:
        """Abandon an upload session; failures are ignored (the registry expires it)."""
        with contextlib.suppress(RegistryError):
            self._client.send("DELETE", upload_url, what="cancel upload", ok=(404, 405))

    def push(
        self,
        repository: str,
        digest: str,
        chunks: Iterable[bytes],
        *,
        size: int | None,
        upload_url: str | None = None,
        rewind: Callable[[int], None] | None = None,
    ) -> None:
        """Upload `chunks` as blob `digest`; verify while streaming; commit only if valid.

        With `rewind` (the source stage's) and a known `size`, a cut upload
        resumes where the registry says it stands (`ResumableUpload`).
        """
        feed = UploadFeed(chunks, digest, size, rewind)
        upload = ResumableUpload(
            self,
            repository,
            digest,
            feed,
            upload_url or self.start(repository),
            plan=self.plan,
        )
        try:
            upload.run()
        except BaseException:
            self.cancel(upload.url)
            raise

    def send_body(
        self,
        method: str,
        target: httpx.URL | str,
        what: str,
        *,
        content: Iterable[bytes] | bytes,
        headers: dict[str, str],
    ) -> httpx.Response:
        """Send an upload request with a body; an expired token mid-stream is transient.

        A streamed body cannot be replayed after a 401 (`auth._replayable`);
        the upload resumes instead, and asking the session's offset (a
        body-less GET) fetches the new token.
        """
        try:
            return self._client.send(method, target, what=what, content=content, headers=headers)
        except AuthenticationError as exc:
            raise TransientRegistryError(
                f"{what}: authorization expired during upload ({exc})",
                registry=self._client.registry,
                status_code=401,
            ) from exc

    def commit(
        self,
        target: httpx.URL,
        what: str,
        *,
        content: Iterable[bytes] | bytes,
        headers: dict[str, str],
    ) -> None:
        """The committing `PUT`; anything but 201 fails the upload."""
        response = self.send_body("PUT", target, what, content=content, headers=headers)
        if response.status_code != 201:
            raise RegistryError(
                f"{what}: expected 201, got {response.status_code}",
                registry=self._client.registry,
                status_code=response.status_code,
            )
