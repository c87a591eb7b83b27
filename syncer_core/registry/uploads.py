"""Blob uploads: cross-repository mount, streamed monolithic PUT, chunked PATCH.

The flows (distribution-spec "Pushing blobs"):

- mount: `POST /v2/<dst>/blobs/uploads/?mount=<d>&from=<src>` → 201 mounted,
  or 202 with an upload session we hand back for reuse;
- stream: `POST .../uploads/` → 202 `Location`, then one
  `PUT <Location>&digest=<d>` whose body is the stream, with an explicit
  `Content-Length` (no chunked transfer encoding; some registries stall on it);
- chunked (opt-in, `ClientOptions.upload_chunk_size`): `PATCH` each chunk with
  `Content-Range` to the latest `Location`, then `PUT ...&digest=` empty.

The `Location` already carries a query (`?_state=...` on distribution): the
digest is appended, never replacing it. On any failure the session is
cancelled with `DELETE` (best effort) so nothing partial lingers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from syncer_core.digest import DigestingIterator
from syncer_core.errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    TransientRegistryError,
)

if TYPE_CHECKING:
    from syncer_core.registry.client import RegistryClient

__all__ = ["BlobUploader", "MountResult"]


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


@dataclass
class _Session:
    """An upload session; its URL changes with every PATCH response."""

    url: str


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup a stream into pieces of exactly `size` bytes (the last may be shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer.extend(chunk)
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class BlobUploader:
    """Upload and mount blobs through a `RegistryClient`'s plumbing."""

    def __init__(self, client: RegistryClient):
        self._client = client

    def _location(self, response: httpx.Response, what: str) -> str:
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
        return self._location(response, what)

    def mount(self, repository: str, digest: str, from_repository: str) -> MountResult:
        """Try a cross-repository mount of `digest` from `from_repository`.

        A mount is an optimisation: 401/403/404 (our credential may not pull
        from that repository, or it is gone) mean "not mounted", and the
        caller uploads instead; a real lack of push access shows there.
        """
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
        except (AuthenticationError, PermissionDeniedError, NotFoundError):
            return MountResult(mounted=False)
        if response.status_code == 201:
            return MountResult(mounted=True)
        return MountResult(mounted=False, upload_url=self._location(response, what))

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
    ) -> None:
        """Upload `chunks` as blob `digest`; verify while streaming; commit only if valid."""
        session = _Session(upload_url or self.start(repository))
        verified = DigestingIterator(chunks, digest, size)
        try:
            if self._client.options.upload_chunk_size > 0:
                self._push_chunked(repository, session, verified, digest)
            else:
                self._push_monolithic(repository, session.url, verified, digest, size)
        except BaseException:
            self.cancel(session.url)
            raise

    def _push_monolithic(
        self, repository: str, url: str, body: DigestingIterator, digest: str, size: int | None
    ) -> None:
        what = f"upload blob {digest} to {repository}"
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        target = httpx.URL(url).copy_merge_params({"digest": digest})
        self._commit(target, what, content=body, headers=headers)

    def _push_chunked(
        self, repository: str, session: _Session, body: DigestingIterator, digest: str
    ) -> None:
        what = f"chunked upload of {digest} to {repository}"
        offset = 0
        for piece in _rechunk(body, self._client.options.upload_chunk_size):
            end = offset + len(piece) - 1
            response = self._client.send(
                "PATCH",
                session.url,
                what=what,
                content=piece,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{end}",
                    "Content-Length": str(len(piece)),
                },
            )
            session.url = self._location(response, what)  # always the latest Location
            offset = end + 1
        target = httpx.URL(session.url).copy_merge_params({"digest": digest})
        self._commit(target, what, content=b"", headers={"Content-Length": "0"})

    def _commit(
        self,
        target: httpx.URL,
        what: str,
        *,
        content: Iterable[bytes] | bytes,
        headers: dict[str, str],
    ) -> None:
        try:
            response = self._client.send("PUT", target, what=what, content=content, headers=headers)
        except AuthenticationError as exc:
            # The token expired while the stream was in flight; a streamed body
            # cannot be replayed here, but the whole blob copy can be retried.
            raise TransientRegistryError(
                f"{what}: authorization expired during upload ({exc})",
                registry=self._client.registry,
                status_code=401,
            ) from exc
        if response.status_code != 201:
            raise RegistryError(
                f"{what}: expected 201, got {response.status_code}",
                registry=self._client.registry,
                status_code=response.status_code,
            )
