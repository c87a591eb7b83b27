"""Small value types returned by the registry client."""

from __future__ import annotations

from dataclasses import dataclass

from syncer_core.registry.blobreader import BlobStream

__all__ = ["BlobStream", "ManifestHead"]


@dataclass(frozen=True)
class ManifestHead:
    """What a manifest HEAD tells: digest (if the registry sent one), type, size."""

    digest: str | None
    media_type: str
    size: int | None
