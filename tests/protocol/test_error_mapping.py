"""Status codes, OCI `errors[]` bodies and transport failures → the `syncer_core.errors` tree."""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

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
from syncer_core.manifest import RawManifest
from syncer_core.mediatypes import OCI_MANIFEST
from syncer_core.registry import ClientOptions, RetryPolicy
from tests.support.mock_registry import REGISTRY, MockRegistry

GET_WHAT = "GET manifest library/app:1.0"
PUT_WHAT = "PUT manifest library/app:1.0"
MANIFEST_PATH = "/v2/library/app/manifests/1.0"
MANIFEST = RawManifest(OCI_MANIFEST, b'{"schemaVersion":2,"config":{},"layers":[]}')


@pytest.fixture
def mock() -> Iterator[MockRegistry]:
    registry = MockRegistry()
    yield registry
    registry.assert_done()


def oci_errors(*codes: str) -> dict[str, Any]:
    return {
        "errors": [{"code": c, "message": f"{c.lower()} message", "detail": None} for c in codes]
    }


@dataclass
class Case:
    id: str
    status: int
    expected: type[RegistryError]
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    op: str = "get"
    retry_after: float | None = None

    @property
    def errors(self) -> list[dict[str, Any]]:
        if isinstance(self.json, dict) and isinstance(self.json.get("errors"), list):
            return list(self.json["errors"])
        return []


CASES = [
    Case("401", 401, AuthenticationError, json=oci_errors("UNAUTHORIZED")),
    Case("403", 403, PermissionDeniedError, json=oci_errors("DENIED")),
    Case("404-manifest-unknown", 404, NotFoundError, json=oci_errors("MANIFEST_UNKNOWN")),
    Case("404-name-unknown", 404, NotFoundError, json=oci_errors("NAME_UNKNOWN")),
    Case("404-empty-body", 404, NotFoundError, content=b""),
    Case(
        "429-retry-after-seconds",
        429,
        RateLimitedError,
        json=oci_errors("TOOMANYREQUESTS"),
        headers={"Retry-After": "7"},
        retry_after=7.0,
    ),
    Case("429-no-retry-after", 429, RateLimitedError, content=b"Too Many Requests (HAP429)"),
    Case(
        "429-unparsable-retry-after",
        429,
        RateLimitedError,
        content=b"slow down",
        headers={"Retry-After": "soon"},
    ),
    Case("500", 500, TransientRegistryError, json=oci_errors("UNKNOWN")),
    Case("502-html", 502, TransientRegistryError, content=b"<html>Bad Gateway</html>"),
    Case("503", 503, TransientRegistryError, content=b"unavailable"),
    Case("504", 504, TransientRegistryError, content=b""),
    Case("408", 408, TransientRegistryError, content=b""),
    Case(
        "400-manifest-blob-unknown-on-put",
        400,
        ManifestRejectedError,
        json=oci_errors("MANIFEST_BLOB_UNKNOWN"),
        op="put",
    ),
    Case(
        "400-manifest-invalid-on-put",
        400,
        ManifestRejectedError,
        json=oci_errors("MANIFEST_INVALID"),
        op="put",
    ),
    Case("400-non-json-on-put", 400, ManifestRejectedError, content=b"bad manifest", op="put"),
    Case("415-on-put", 415, ManifestRejectedError, content=b"unsupported", op="put"),
    Case(
        "400-manifest-invalid-on-get",
        400,
        ManifestRejectedError,
        json=oci_errors("MANIFEST_INVALID"),
    ),
    Case("400-denied", 400, PermissionDeniedError, json=oci_errors("DENIED")),
    Case("400-blob-unknown", 400, NotFoundError, json=oci_errors("BLOB_UNKNOWN")),
    Case("400-unknown-code", 400, RegistryError, json=oci_errors("SIZE_INVALID")),
    Case("400-non-json", 400, RegistryError, content=b"<html>nope</html>"),
    Case("400-json-without-errors", 400, RegistryError, json={"message": "nope"}),
    Case("400-errors-not-a-list", 400, RegistryError, json={"errors": "nope"}),
    Case("418", 418, RegistryError, content=b"teapot"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_status_maps_to_exception(mock: MockRegistry, case: Case) -> None:
    method = "PUT" if case.op == "put" else "GET"
    mock.expect(
        method,
        MANIFEST_PATH,
        status=case.status,
        json=case.json,
        content=case.content,
        headers=case.headers,
    )
    client = mock.client()
    with pytest.raises(RegistryError) as info:
        if case.op == "put":
            client.put_manifest("library/app", "1.0", MANIFEST)
        else:
            client.get_manifest("library/app", "1.0")
    error = info.value
    assert type(error) is case.expected
    assert error.status_code == case.status
    assert error.registry == REGISTRY
    assert error.errors == case.errors
    message = str(error)
    assert REGISTRY in message
    assert (PUT_WHAT if case.op == "put" else GET_WHAT) in message
    assert str(case.status) in message
    for entry in case.errors:  # the registry's codes are kept for the user
        assert entry["code"] in message
    if isinstance(error, RateLimitedError):
        assert error.retry_after == case.retry_after


def test_retry_after_http_date_is_seconds_from_now(mock: MockRegistry) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    mock.expect("GET", MANIFEST_PATH, status=429, headers={"Retry-After": when})
    with pytest.raises(RateLimitedError) as info:
        mock.client().get_manifest("library/app", "1.0")
    assert info.value.retry_after is not None
    assert 115 <= info.value.retry_after <= 121


def test_retry_after_date_in_the_past_is_zero(mock: MockRegistry) -> None:
    when = email.utils.formatdate(time.time() - 3600, usegmt=True)
    mock.expect("GET", MANIFEST_PATH, status=429, headers={"Retry-After": when})
    with pytest.raises(RateLimitedError) as info:
        mock.client().get_manifest("library/app", "1.0")
    assert info.value.retry_after == 0.0


def test_non_json_body_is_quoted_briefly(mock: MockRegistry) -> None:
    mock.expect("GET", MANIFEST_PATH, status=503, content=b"<html>" + b"x" * 5000)
    with pytest.raises(TransientRegistryError) as info:
        mock.client().get_manifest("library/app", "1.0")
    assert "<html>" in str(info.value)
    assert len(str(info.value)) < 400
    assert info.value.errors == []


def test_huge_error_body_is_read_only_up_to_64_kib(mock: MockRegistry) -> None:
    served = 0

    def body() -> Iterator[bytes]:
        nonlocal served
        for _ in range(256):  # 16 MiB if read to the end
            served += 65_536
            yield b"e" * 65_536

    mock.expect("GET", MANIFEST_PATH, status=500, content=body())
    with pytest.raises(TransientRegistryError) as info:
        mock.client().get_manifest("library/app", "1.0")
    assert served <= 2 * 65_536
    assert len(str(info.value)) < 400


def test_error_body_is_capped_on_non_streamed_requests_too(mock: MockRegistry) -> None:
    blob_path = "/v2/library/app/blobs/sha256:" + "0" * 64
    served = 0

    def body() -> Iterator[bytes]:
        nonlocal served
        for _ in range(256):
            served += 65_536
            yield b"{" * 65_536

    mock.expect("HEAD", blob_path, status=502, content=body())
    with pytest.raises(TransientRegistryError) as info:
        mock.client().head_blob("library/app", "sha256:" + "0" * 64)
    assert served <= 2 * 65_536
    assert info.value.errors == []


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("The read operation timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_are_transient(mock: MockRegistry, exc: httpx.HTTPError) -> None:
    mock.expect("GET", MANIFEST_PATH, raises=exc)
    with pytest.raises(TransientRegistryError) as info:
        mock.client().get_manifest("library/app", "1.0")
    error = info.value
    assert type(error) is TransientRegistryError
    assert error.status_code is None
    assert error.registry == REGISTRY
    assert GET_WHAT in str(error)
    assert REGISTRY in str(error)
    assert type(exc).__name__ in str(error)
    assert error.__cause__ is exc


def test_failure_while_streaming_a_blob_is_transient(mock: MockRegistry) -> None:
    """A body cut again and again at the same byte: resumed a bounded number of times, then
    raised as transient (the resume itself is tested in test_blob_resume)."""
    digest = "sha256:" + "1" * 64

    def body() -> Iterator[bytes]:
        yield b"partial"
        raise httpx.ReadError("connection reset")

    def no_progress() -> Iterator[bytes]:
        raise httpx.ReadError("connection reset")
        yield b""  # pragma: no cover - makes this a generator

    path = f"/v2/library/app/blobs/{digest}"
    mock.expect("GET", path, content=body(), headers={"Content-Length": "100"})
    for _ in range(3):
        mock.expect(
            "GET",
            path,
            status=206,
            content=no_progress(),
            headers={"Content-Range": "bytes 7-99/100", "Content-Length": "93"},
            check=lambda call: _assert_range(call.header("range"), "bytes=7-"),
        )
    what = f"GET blob library/app@{digest}"
    with (
        mock.client(options=ClientOptions(chunk_size=7)).open_blob("library/app", digest) as blob,
        pytest.raises(TransientRegistryError, match=what),
    ):
        b"".join(blob.iter_chunks())
    mock.assert_done()


def _assert_range(actual: str | None, expected: str) -> None:
    assert actual == expected


def tls_failure(cause: ssl.SSLError | None = None) -> httpx.ConnectError:
    """A TLS handshake failure as httpx raises it (a certificate one by default)."""
    error = httpx.ConnectError("TLS handshake failed")
    error.__cause__ = cause or ssl.SSLCertVerificationError(
        1, "certificate verify failed: self-signed certificate"
    )
    return error


def test_certificate_failure_is_tls_verification_error(mock: MockRegistry) -> None:
    mock.expect("GET", MANIFEST_PATH, raises=tls_failure())
    # Not retried, although a ConnectError otherwise would be.
    client = mock.client(retry=RetryPolicy(attempts=3, base_delay=0.001))
    with pytest.raises(TLSVerificationError) as info:
        client.get_manifest("library/app", "1.0")
    assert info.value.registry == REGISTRY
    assert GET_WHAT in str(info.value)
    assert "ca_file" in str(info.value)
    assert not isinstance(info.value, TransientRegistryError)


#: What OpenSSL 3 says when TLS is spoken to a plain-HTTP port.
WRONG_VERSION = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")


def test_tls_to_a_plain_http_port_fails_at_once_naming_insecure(mock: MockRegistry) -> None:
    mock.expect("GET", "/v2/app/manifests/1", raises=tls_failure(WRONG_VERSION))
    hint = f"set `insecure: true` in the auth-file entry for {REGISTRY}"
    with pytest.raises(SchemeMismatchError, match=hint) as info:
        mock.client(retry=RetryPolicy(attempts=3, base_delay=0.001)).get_manifest("app", "1")
    assert info.value.speaks == "http" and not isinstance(info.value, TransientRegistryError)


@pytest.mark.parametrize(
    "body",
    [
        b"Client sent an HTTP request to an HTTPS server.\n",  # Go net/http (distribution)
        b"<html><h1>400 The plain HTTP request was sent to HTTPS port</h1></html>",  # nginx
    ],
)
def test_plain_http_to_a_tls_port_fails_at_once_naming_https(
    mock: MockRegistry, body: bytes
) -> None:
    upload = f"http://{REGISTRY}/v2/library/app/blobs/uploads/u1"
    mock.expect("DELETE", upload, status=400, content=body)
    mock.expect("GET", f"http://{REGISTRY}/v2/x", status=400, content=body)
    client = mock.client(retry=RetryPolicy(attempts=3, base_delay=0.001))
    with pytest.raises(SchemeMismatchError) as info:
        client.send("DELETE", upload, what="cancel upload")
    assert info.value.speaks == "https" and "speaks HTTPS" in str(info.value)
    assert "insecure: true" in str(info.value)
    with pytest.raises(SchemeMismatchError):  # not retried: one request
        client.retrying(lambda: client.send("GET", f"http://{REGISTRY}/v2/x", what="GET"))


def test_a_400_over_https_with_that_text_stays_a_plain_400(mock: MockRegistry) -> None:
    mock.expect(
        "GET", "/v2/x", status=400, content=b"Client sent an HTTP request to an HTTPS server"
    )
    with pytest.raises(RegistryError) as info:
        mock.client().send("GET", "/v2/x", what="GET")
    assert not isinstance(info.value, SchemeMismatchError)


def test_certificate_failure_in_the_context_chain_is_found(mock: MockRegistry) -> None:
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "hostname mismatch")
        except ssl.SSLCertVerificationError:
            raise httpx.ConnectError("handshake") from None
    except httpx.ConnectError as exc:
        # `from None` hides the cause; the certificate error is still in the context.
        error = exc
    assert error.__cause__ is None and error.__context__ is not None
    mock.expect("GET", "/v2/", raises=error)
    with pytest.raises(TLSVerificationError):
        mock.client().ping()
