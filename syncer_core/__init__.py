"""image-syncer's engine: references, configuration, registry client, planning and copying.

This package never imports Prefect; `flows/` orchestrates it.
"""

from __future__ import annotations

from syncer_core.errors import (
    AuthenticationError,
    ConfigError,
    DigestMismatchError,
    InsecureRealmError,
    InvalidReferenceError,
    ManifestError,
    ManifestRejectedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RegistryError,
    RuleError,
    SchemeMismatchError,
    SyncerError,
    TLSVerificationError,
    TransientRegistryError,
)
from syncer_core.manifest import RawManifest
from syncer_core.reference import Reference

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "DigestMismatchError",
    "InsecureRealmError",
    "InvalidReferenceError",
    "ManifestError",
    "ManifestRejectedError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RawManifest",
    "Reference",
    "RegistryError",
    "RuleError",
    "SchemeMismatchError",
    "SyncerError",
    "TLSVerificationError",
    "TransientRegistryError",
]
