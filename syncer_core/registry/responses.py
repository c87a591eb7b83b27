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
    SchemeMismatchError,
    TLSVerificationError,
    TransientRegistryError,
)

__all__ = [
    "error_from_response",
    "error_from_transport",
    "is_https_port_answer",
    "is_plaintext_peer",
    "parse_retry_after",
    "raise_for_status",
    "schema1_push_error",
]

_MAX_ERROR_BODY = 64 * 1024
#: OpenSSL's words for a peer whose first bytes are not TLS (a plain-HTTP port).
_PLAINTEXT_PEER_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)
#: What TLS servers answer a plain-HTTP request with (Go's net/http, nginx).
_HTTPS_PORT_ANSWERS = (
    "client sent an http request to an https server",
    "the plain http request was sent to https port",
)
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
    if status == 400 and is_https_port_answer(response, body):
        return SchemeMismatchError(
            f"{what}: {registry} speaks HTTPS, but was sent plain HTTP "
            f"({response.request.url.copy_with(query=None)}). With `insecure: true` in its "
            "auth-file entry HTTPS is tried first; if an upload Location or a redirect of the "
            "registry names http://, fix the registry's (or its proxy's) external URL to https",
            speaks="https",
            **kwargs,
        )
    codes = {str(e.get("code", "")).upper() for e in errors}
    if status == 401:
        return AuthenticationError(message, **kwargs)
    if status == 403:
        return PermissionDeniedError(message, **kwargs)
    if status == 404:
        if "NAME_UNKNOWN" in codes and _method(response) in _WRITES:
            message += _CREATE_REPOSITORY
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


#: Methods that write to a repository: a NAME_UNKNOWN there means it must be created first.
_WRITES = frozenset({"POST", "PUT", "PATCH"})
_CREATE_REPOSITORY = (
    "; the destination repository does not exist and this registry does not create it on "
    "push (ECR, regclient #869): create the repository first, then sync again"
)


def _method(response: httpx.Response) -> str:
    try:
        return response.request.method
    except RuntimeError:  # a response built without its request
        return ""


def raise_for_status(
    response: httpx.Response, *, registry: str, what: str, secrets: Sequence[str] = ()
) -> None:
    """Raise the mapped error unless the response is 2xx."""
    if not response.is_success:
        raise error_from_response(response, registry=registry, what=what, secrets=secrets)


def schema1_push_error(error: RegistryError) -> RegistryError:
    """What a failed PUT of a Docker schema1 manifest means.

    A registry without schema1 support refuses it: distribution 2.8 answers
    `500 UNKNOWN` (its `ErrSchemaV1Unsupported`), others 400/415. Retrying
    cannot help, so those become a `ManifestRejectedError` that says
    schema1; other failures (429, 503, resets) are returned unchanged.
    """
    codes = {str(e.get("code", "")).upper() for e in error.errors}
    refused = isinstance(error, ManifestRejectedError) or (
        error.status_code == 500 and codes == {"UNKNOWN"}
    )
    if not refused or error.status_code in (401, 403, 404, 429):
        return error
    return ManifestRejectedError(
        f"{error}: the destination refused a Docker schema1 manifest (deprecated; registries "
        "drop schema1 support, e.g. distribution unless compatibility.schema1.enabled); "
        "sync a schema2/OCI tag of the image instead",
        registry=error.registry,
        status_code=error.status_code,
        errors=error.errors,
    )


def is_https_port_answer(response: httpx.Response, body: bytes) -> bool:
    """A TLS port's 400 answer to a plain-HTTP request (`body`: the response's first bytes)."""
    if response.status_code != 400 or response.request.url.scheme != "http":
        return False
    text = body[:512].decode("utf-8", "replace").lower()
    return any(answer in text for answer in _HTTPS_PORT_ANSWERS)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts, each once."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_plaintext_peer(exc: BaseException) -> bool:
    """Whether a TLS handshake failed because the peer's bytes are not TLS (plain HTTP)."""
    for error in _exception_chain(exc):
        if (
            isinstance(error, ssl.SSLError)
            and getattr(error, "reason", None) in _PLAINTEXT_PEER_REASONS
        ):
            return True
        if any(f"[SSL: {reason}]" in str(error) for reason in _PLAINTEXT_PEER_REASONS):
            return True
    return False


def _is_certificate_error(exc: BaseException) -> bool:
    return any(
        isinstance(error, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(error)
        for error in _exception_chain(exc)
    )


def error_from_transport(
    exc: httpx.HTTPError, *, registry: str, what: str, insecure: bool = False
) -> RegistryError:
    """Translate an httpx transport failure (no HTTP status) into our tree.

    TLS spoken to a plain-HTTP port is a `SchemeMismatchError` (never
    retried) for a registry that is not `insecure`: only `insecure: true`
    allows plain HTTP. An insecure registry probed its scheme already, so
    there the same failure means its port changed during the run.
    """
    if not insecure and is_plaintext_peer(exc):
        return SchemeMismatchError(
            f"{what}: {registry} speaks plain HTTP, not HTTPS ({exc}); to allow plain HTTP, "
            f"set `insecure: true` in the auth-file entry for {registry} (--auth)",
            registry=registry,
            speaks="http",
        )
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
