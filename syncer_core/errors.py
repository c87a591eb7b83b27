"""The one exception tree of image-syncer.

Every error the engine raises on purpose derives from `SyncerError`, so callers
can catch one base, and each carries the context a user needs to act (the
file and key, the registry and reference, the HTTP status):

```
SyncerError
├── ConfigError(ValueError)            bad auth/images/config file, flag or setting
│   └── RuleError                      one bad images-file entry (file + key)
├── InvalidReferenceError(ValueError)  an image reference that does not parse
├── ManifestError(ValueError)          manifest bytes that are not a manifest we know
├── DigestMismatchError                content did not hash to the digest it claimed
└── RegistryError                      .registry .status_code .errors
    ├── AuthenticationError            401 after credentials/token were offered
    ├── PermissionDeniedError          403 / DENIED
    ├── NotFoundError                  404 / *_UNKNOWN
    ├── ManifestRejectedError          the destination refused a manifest (400 MANIFEST_*)
    ├── InsecureRealmError             a plain-HTTP token realm off a plain-HTTP registry's host
    ├── TLSVerificationError           certificate verification failed
    ├── SchemeMismatchError            TLS to a plain-HTTP port, or plain HTTP to a TLS one
    └── TransientRegistryError         5xx, timeouts, resets: worth retrying
        ├── RateLimitedError           429, .retry_after
        └── SourceReadError            the source failed mid-blob during an upload
```

Status codes decide the class (`syncer_core.registry.responses` is the only
place that maps them); the registry's `errors[]` body is kept for messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    "RegistryError",
    "RuleError",
    "SchemeMismatchError",
    "SourceReadError",
    "SyncerError",
    "TLSVerificationError",
    "TransientRegistryError",
]


class SyncerError(Exception):
    """Base of every error image-syncer raises deliberately."""


class ConfigError(SyncerError, ValueError):
    """A configuration file, flag or setting is unusable.

    Raised before any network traffic. The message names the file (or flag)
    and the key, and never contains a secret.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        parts = []
        if file:
            parts.append(str(file))
        if key is not None:
            parts.append(f"key {key!r}")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class RuleError(ConfigError):
    """One entry of an images file is invalid (the file and key are named)."""


class InvalidReferenceError(SyncerError, ValueError):
    """A string is not a valid image reference."""

    def __init__(self, reference: str, reason: str):
        self.reference = reference
        self.reason = reason
        super().__init__(f"invalid image reference {reference!r}: {reason}")


class ManifestError(SyncerError, ValueError):
    """Bytes that should be a manifest are not one we understand."""


class DigestMismatchError(SyncerError):
    """Content did not hash to the digest it was fetched or pushed under."""

    def __init__(self, expected: str, actual: str, *, what: str = "content"):
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what} digest mismatch: expected {expected}, got {actual}")


class RegistryError(SyncerError):
    """A registry answered with an error, or could not be reached.

    Attributes:
        registry: the registry host the request went to.
        status_code: the HTTP status, or None for connection-level failures.
        errors: the OCI `errors[]` entries of the response body, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        status_code: int | None = None,
        errors: Sequence[dict[str, Any]] = (),
    ):
        self.registry = registry
        self.status_code = status_code
        self.errors = list(errors)
        super().__init__(message)


class AuthenticationError(RegistryError):
    """The registry refused our credentials or token (401)."""


class PermissionDeniedError(RegistryError):
    """Authenticated, but not allowed to do this (403 / DENIED)."""


class NotFoundError(RegistryError):
    """The repository, manifest, blob or upload does not exist (404)."""


class ManifestRejectedError(RegistryError):
    """The destination refused a manifest (bad media type, missing blobs, ...)."""


class InsecureRealmError(RegistryError):
    """A Bearer realm would send credentials over plain HTTP.

    Allowed only for a plain-HTTP registry's realm on its own host.
    """


class TLSVerificationError(RegistryError):
    """The registry's TLS certificate could not be verified."""


class SchemeMismatchError(RegistryError):
    """TLS was spoken to a plain-HTTP port, or plain HTTP to a TLS one.

    A configuration problem, not a transient failure: retrying cannot help,
    so it is never retried. The message names the registry and the auth-file
    setting to change. `speaks` is what the registry's port really speaks,
    `http` or `https`.
    """

    def __init__(self, message: str, *, speaks: str, **kwargs: Any):
        self.speaks = speaks
        super().__init__(message, **kwargs)


class TransientRegistryError(RegistryError):
    """A failure that may succeed when retried: 5xx, timeout, reset connection."""


class RateLimitedError(TransientRegistryError):
    """The registry answered 429; `retry_after` is its hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class SourceReadError(TransientRegistryError):
    """Reading the source blob failed (beyond its own resumes) while it was being uploaded.

    Transient like the failure it wraps, so the copy is retried; but it is the
    source's failure, not a cut upload: the upload must not be resumed from
    the destination's offset (the source has nothing more to give now), and
    the reason reported is the source's, not a digest mismatch.
    """
