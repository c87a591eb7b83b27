"""Map registry responses and transport failures to the `syncer_core.errors` tree.

This is the single place where status codes become exception types
(containers/image `httpResponseToError`). The decision is made on the HTTP
status; the OCI `errors[]` body only enriches the message, because registries
disagree on codes far more than on statuses.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import Sequence
from typing import Any

import httpx

from syncer_core.errors import (
    AuthenticationError,
    ManifestRejectedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RegistryError,
    TLSVerificationError,
    TransientRegistryError,
)

__all__ = [
    "error_from_response",
    "error_from_transport",
    "parse_retry_after",
    "raise_for_status",
]

_MAX_ERROR_BODY = 64 * 1024
_TRANSIENT_STATUSES = frozenset({408, 425, 500, 502, 503, 504, 520, 521, 522, 524})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read `Retry-After` as seconds (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _read_error_body(response: httpx.Response) -> bytes:
    """Read at most 64 KiB of an error body (streamed responses included)."""
    try:
        return response.content[:_MAX_ERROR_BODY]  # already read (non-streamed request)
    except httpx.ResponseNotRead:
        pass
    data = bytearray()
    try:
        for chunk in response.iter_bytes():
            data.extend(chunk)
            if len(data) >= _MAX_ERROR_BODY:
                break
    except (httpx.HTTPError, RuntimeError):
        pass
    finally:
        response.close()
    return bytes(data[:_MAX_ERROR_BODY])


def _oci_errors(body: bytes) -> list[dict[str, Any]]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, dict)]


def _describe(errors: list[dict[str, Any]], body: bytes) -> str:
    if errors:
        parts = [
            ": ".join(str(x) for x in (e.get("code"), e.get("message")) if x) for e in errors[:3]
        ]
        return "; ".join(p for p in parts if p)
    text = body.decode("utf-8", "replace").strip()
    return text[:200]


def _redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret inside an error body with `***`."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def error_from_response(
    response: httpx.Response, *, registry: str, what: str, secrets: Sequence[str] = ()
) -> RegistryError:
    """Build the exception for an unsuccessful response.

    Args:
        response: the failed response (its body is read, capped, and closed).
        registry: the registry host, for the message and `.registry`.
        what: the operation, e.g. `GET manifest library/nginx:1.25`.
        secrets: values to blank out of the foreign error text (a server may
            echo the credentials it was sent).
    """
    status = response.status_code
    body = _read_error_body(response)
    secrets = [s for s in secrets if s]
    if secrets:
        body = _redact(body.decode("utf-8", "replace"), secrets).encode()
    errors = _oci_errors(body)
    detail = _describe(errors, body)
    message = f"{what}: {registry} answered {status}" + (f" ({detail})" if detail else "")
    kwargs: dict[str, Any] = {"registry": registry, "status_code": status, "errors": errors}
    codes = {str(e.get("code", "")).upper() for e in errors}
    if status == 401:
        return AuthenticationError(message, **kwargs)
    if status == 403:
        return PermissionDeniedError(message, **kwargs)
    if status == 404:
        return NotFoundError(message, **kwargs)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitedError(message, retry_after=retry_after, **kwargs)
    if status in _TRANSIENT_STATUSES or status >= 500:
        return TransientRegistryError(message, **kwargs)
    if (what.startswith("PUT manifest") and status in (400, 415)) or codes & {
        "MANIFEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_UNVERIFIED",
    }:
        return ManifestRejectedError(message, **kwargs)
    if codes & {"BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"}:
        return NotFoundError(message, **kwargs)
    if "DENIED" in codes:
        return PermissionDeniedError(message, **kwargs)
    return RegistryError(message, **kwargs)


def raise_for_status(
    response: httpx.Response, *, registry: str, what: str, secrets: Sequence[str] = ()
) -> None:
    """Raise the mapped error unless the response is 2xx."""
    if not response.is_success:
        raise error_from_response(response, registry=registry, what=what, secrets=secrets)


def _is_certificate_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def error_from_transport(exc: httpx.HTTPError, *, registry: str, what: str) -> RegistryError:
    """Translate an httpx transport failure (no HTTP status) into our tree."""
    if _is_certificate_error(exc):
        return TLSVerificationError(
            f"{what}: TLS certificate of {registry} could not be verified ({exc}); "
            "configure its CA bundle (ca_file) or mark it insecure",
            registry=registry,
        )
    kind = type(exc).__name__
    return TransientRegistryError(
        f"{what}: {registry} unreachable ({kind}: {exc})", registry=registry
    )
