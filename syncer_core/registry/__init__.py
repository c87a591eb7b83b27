"""The registry client: HTTP, auth, uploads and error mapping (the only httpx user)."""

from __future__ import annotations

from syncer_core.registry.access import RegistryAccess
from syncer_core.registry.client import BlobStream, ManifestHead, MountResult, RegistryClient
from syncer_core.registry.http import ClientOptions
from syncer_core.registry.retry import RetryPolicy

__all__ = [
    "BlobStream",
    "ClientOptions",
    "ManifestHead",
    "MountResult",
    "RegistryAccess",
    "RegistryClient",
    "RetryPolicy",
]
