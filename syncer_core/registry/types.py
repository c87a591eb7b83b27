"""Small value types returned by the registry client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from syncer_core.registry.responses import error_from_transport

__all__ = ["BlobStream", "ManifestHead"]


@dataclass(frozen=True)
class ManifestHead:
    """What a manifest HEAD tells: digest (if the registry sent one), type, size."""

    digest: str | None
    media_type: str
    size: int | None


class BlobStream:
    """An open blob download: its size and an iterator of chunks.

    The body is read lazily in `chunk_size` pieces; nothing is buffered
    beyond one chunk. Transport failures mid-stream become
    `TransientRegistryError`, so the copy can be retried as a whole.
    """

    def __init__(
        self, response: httpx.Response, digest: str, chunk_size: int, registry: str, what: str
    ):
        self._response = response
        self.digest = digest
        self._chunk_size = chunk_size
        self._registry = registry
        self._what = what
        length = response.headers.get("content-length", "")
        self.size: int | None = int(length) if length.isdigit() else None

    def iter_chunks(self) -> Iterator[bytes]:
        """Yield the body in chunks; raise `TransientRegistryError` on a broken stream."""
        try:
            yield from self._response.iter_bytes(self._chunk_size)
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, registry=self._registry, what=self._what) from exc
