"""Tag pagination, manifest integrity, blob uploads and redirects against a scripted registry."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import httpx
import pytest

from syncer_core.digest import compute_digest
from syncer_core.errors import (
    DigestMismatchError,
    NotFoundError,
    RegistryError,
    TransientRegistryError,
)
from syncer_core.manifest import MAX_MANIFEST_BYTES, RawManifest
from syncer_core.mediatypes import (
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V2,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from syncer_core.registry import ClientOptions, RegistryAccess, RetryPolicy
from tests.support.mock_registry import REGISTRY, Call, MockRegistry

TAGS = "/v2/x/tags/list"


@pytest.fixture
def mock() -> Iterator[MockRegistry]:
    registry = MockRegistry()
    yield registry
    registry.assert_done()


def next_link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="next"'}


# -- tag listing ---------------------------------------------------------------------


def test_list_tags_follows_relative_and_absolute_links(mock: MockRegistry) -> None:
    mock.expect(
        "GET",
        TAGS,
        json={"name": "x", "tags": ["b", "a"]},
        headers=next_link("/v2/x/tags/list?last=b&n=2"),
    )
    mock.expect(
        "GET",
        "/v2/x/tags/list?last=b&n=2",
        json={"name": "x", "tags": ["d", "b"]},  # unsorted, with a repeat
        headers=next_link(f"https://{REGISTRY}/v2/x/tags/list?last=d&n=2"),
    )
    mock.expect("GET", "/v2/x/tags/list?last=d&n=2", json={"name": "x", "tags": ["e"]})
    assert mock.client().list_tags("x") == ["a", "b", "d", "e"]


def test_list_tags_picks_the_next_link_among_several(mock: MockRegistry) -> None:
    links = (
        '</v2/x/tags/list?last=a&n=1&prev=1>; rel="prev", </v2/x/tags/list?last=b&n=1>; rel="next"'
    )
    mock.expect("GET", TAGS, json={"tags": ["b"]}, headers={"Link": links})
    mock.expect("GET", "/v2/x/tags/list?last=b&n=1", json={"tags": ["c"]})
    assert mock.client().list_tags("x") == ["b", "c"]


@pytest.mark.parametrize("doc", [{"name": "x", "tags": None}, {"name": "x"}, {"tags": []}])
def test_list_tags_of_empty_repository(mock: MockRegistry, doc: dict[str, object]) -> None:
    mock.expect("GET", TAGS, json=doc)
    assert mock.client().list_tags("x") == []


def test_list_tags_ignores_non_string_entries(mock: MockRegistry) -> None:
    mock.expect("GET", TAGS, json={"tags": ["v1", 2, None, "v0"]})
    assert mock.client().list_tags("x") == ["v0", "v1"]


def test_list_tags_of_missing_repository(mock: MockRegistry) -> None:
    mock.expect("GET", TAGS, status=404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
    with pytest.raises(NotFoundError):
        mock.client().list_tags("x")


@pytest.mark.parametrize("body", [b"<html>", b"[]", b""])
def test_list_tags_with_a_non_object_body(mock: MockRegistry, body: bytes) -> None:
    mock.expect("GET", TAGS, content=body)
    with pytest.raises(RegistryError, match="no JSON object"):
        mock.client().list_tags("x")


# -- manifests -------------------------------------------------------------------------


def manifest_bytes(media_type: str | None = OCI_MANIFEST, **extra: object) -> bytes:
    doc: dict[str, object] = {"schemaVersion": 2}
    if media_type:
        doc["mediaType"] = media_type
    doc.update(extra or {"config": {}, "layers": []})
    # Deliberately not canonical JSON: the exact bytes must survive.
    return json.dumps(doc, indent=3).encode() + b"\n"


BODY = manifest_bytes()
BODY_DIGEST = compute_digest(BODY)


def test_get_manifest_by_digest_returns_exact_bytes(mock: MockRegistry) -> None:
    def accepts_all(call: Call) -> None:
        accept = call.header("accept") or ""
        assert all(media_type in accept for media_type in MANIFEST_TYPES)

    mock.expect(
        "GET",
        f"/v2/x/manifests/{BODY_DIGEST}",
        content=BODY,
        headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": BODY_DIGEST},
        check=accepts_all,
    )
    manifest = mock.client().get_manifest("x", BODY_DIGEST)
    assert manifest.data == BODY
    assert manifest.digest == BODY_DIGEST
    assert manifest.media_type == OCI_MANIFEST


def test_get_manifest_by_digest_with_tampered_bytes(mock: MockRegistry) -> None:
    tampered = BODY.replace(b'"layers"', b'"Layers"')
    mock.expect(
        "GET",
        f"/v2/x/manifests/{BODY_DIGEST}",
        content=tampered,
        headers={"Content-Type": OCI_MANIFEST},
    )
    with pytest.raises(DigestMismatchError) as info:
        mock.client().get_manifest("x", BODY_DIGEST)
    assert info.value.expected == BODY_DIGEST
    assert info.value.actual == compute_digest(tampered)


def test_get_manifest_by_digest_ignores_a_lying_header_but_checks_bytes(
    mock: MockRegistry,
) -> None:
    other = compute_digest(b"other")
    mock.expect(
        "GET",
        f"/v2/x/manifests/{BODY_DIGEST}",
        content=BODY,
        headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": other},
    )
    # The requested digest is what matters, and the bytes match it.
    assert mock.client().get_manifest("x", BODY_DIGEST).digest == BODY_DIGEST


def test_get_manifest_by_tag_with_disagreeing_digest_header(mock: MockRegistry) -> None:
    claimed = compute_digest(b"something else")
    mock.expect(
        "GET",
        "/v2/x/manifests/latest",
        content=BODY,
        headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": claimed},
    )
    with pytest.raises(DigestMismatchError) as info:
        mock.client().get_manifest("x", "latest")
    assert info.value.expected == claimed
    assert info.value.actual == BODY_DIGEST


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (manifest_bytes(DOCKER_MANIFEST_V2), DOCKER_MANIFEST_V2),
        (manifest_bytes(DOCKER_MANIFEST_LIST, manifests=[]), DOCKER_MANIFEST_LIST),
        (manifest_bytes(None, manifests=[]), OCI_INDEX),
        (manifest_bytes(None, config={}, layers=[]), OCI_MANIFEST),
    ],
    ids=["docker-v2", "docker-list", "index-shape", "manifest-shape"],
)
def test_media_type_detected_from_body_when_served_as_json(
    mock: MockRegistry, body: bytes, expected: str
) -> None:
    mock.expect(
        "GET", "/v2/x/manifests/latest", content=body, headers={"Content-Type": "application/json"}
    )
    assert mock.client().get_manifest("x", "latest").media_type == expected


def test_manifest_larger_than_4_mib_is_refused(mock: MockRegistry) -> None:
    served = 0
    piece = b" " * 65_536

    def body() -> Iterator[bytes]:
        nonlocal served
        yield b'{"schemaVersion":2,"layers":[],"pad":"'
        for _ in range(2 * MAX_MANIFEST_BYTES // len(piece)):
            served += len(piece)
            yield piece
        yield b'"}'

    mock.expect(
        "GET", "/v2/x/manifests/big", content=body(), headers={"Content-Type": OCI_MANIFEST}
    )
    with pytest.raises(RegistryError, match="larger than") as info:
        mock.client().get_manifest("x", "big")
    assert info.value.registry == REGISTRY
    assert served <= MAX_MANIFEST_BYTES + 2 * len(piece)


def test_manifest_of_exactly_4_mib_is_accepted(mock: MockRegistry) -> None:
    head = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","pad":"'
    body = head + b" " * (MAX_MANIFEST_BYTES - len(head) - 2) + b'"}'
    assert len(body) == MAX_MANIFEST_BYTES
    mock.expect("GET", "/v2/x/manifests/big", content=body)
    assert mock.client().get_manifest("x", "big").size == MAX_MANIFEST_BYTES


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST_V2])
def test_put_manifest_sends_exact_bytes_and_content_type(
    mock: MockRegistry, media_type: str
) -> None:
    body = manifest_bytes(media_type)
    manifest = RawManifest(media_type, body)

    def exact(call: Call) -> None:
        assert call.body == body
        assert call.header("content-type") == media_type
        assert call.header("content-length") == str(len(body))

    mock.expect(
        "PUT",
        "/v2/x/manifests/v1",
        status=201,
        headers={"Docker-Content-Digest": manifest.digest, "Location": "/v2/x/manifests/d"},
        check=exact,
    )
    assert mock.client().put_manifest("x", "v1", manifest) == manifest.digest


def test_put_manifest_stored_under_another_digest(mock: MockRegistry) -> None:
    manifest = RawManifest(OCI_MANIFEST, BODY)
    mock.expect(
        "PUT",
        "/v2/x/manifests/v1",
        status=201,
        headers={"Docker-Content-Digest": compute_digest(b"x")},
    )
    with pytest.raises(DigestMismatchError):
        mock.client().put_manifest("x", "v1", manifest)


def test_put_manifest_under_a_wrong_digest_sends_nothing(mock: MockRegistry) -> None:
    manifest = RawManifest(OCI_MANIFEST, BODY)
    with pytest.raises(DigestMismatchError):
        mock.client().put_manifest("x", compute_digest(b"not it"), manifest)
    assert mock.calls == []


# -- blob uploads ------------------------------------------------------------------------

DATA = b"0123456789"
DIGEST = compute_digest(DATA)
UPLOADS = "/v2/x/blobs/uploads/"
SESSION = "/v2/x/blobs/uploads/6f1c?_state=abc"


def octet_put(body: bytes) -> object:
    def check(call: Call) -> None:
        assert call.body == body
        assert call.header("content-length") == str(len(body))
        assert call.header("transfer-encoding") is None
        assert call.header("content-type") == "application/octet-stream"

    return check


def test_upload_posts_then_puts_with_state_and_digest(mock: MockRegistry) -> None:
    def empty_post(call: Call) -> None:
        assert call.body == b""
        assert call.header("content-length") == "0"

    mock.expect("POST", UPLOADS, status=202, headers={"Location": SESSION}, check=empty_post)
    mock.expect(
        "PUT",
        f"/v2/x/blobs/uploads/6f1c?_state=abc&digest={DIGEST}",
        status=201,
        headers={"Docker-Content-Digest": DIGEST},
        check=octet_put(DATA),
    )
    mock.client().push_blob("x", DIGEST, iter([DATA[:3], DATA[3:]]), size=len(DATA))


def test_upload_location_may_be_absolute(mock: MockRegistry) -> None:
    location = f"https://{REGISTRY}/v2/x/blobs/uploads/9?_state=q"
    mock.expect("POST", UPLOADS, status=202, headers={"Location": location})
    mock.expect("PUT", f"{location}&digest={DIGEST}", status=201, check=octet_put(DATA))
    mock.client().push_blob("x", DIGEST, [DATA], size=len(DATA))


def test_upload_without_location_is_an_error(mock: MockRegistry) -> None:
    mock.expect("POST", UPLOADS, status=202)
    with pytest.raises(RegistryError, match="no upload Location"):
        mock.client().push_blob("x", DIGEST, [DATA], size=len(DATA))


def test_upload_commit_must_answer_201(mock: MockRegistry) -> None:
    mock.expect("POST", UPLOADS, status=202, headers={"Location": SESSION})
    mock.expect("PUT", SESSION.split("?")[0], status=204)
    mock.expect("DELETE", SESSION, status=204)
    with pytest.raises(RegistryError, match="expected 201"):
        mock.client().push_blob("x", DIGEST, [DATA], size=len(DATA))


def test_push_blob_bytes_skips_existing_blob(mock: MockRegistry) -> None:
    mock.expect("HEAD", f"/v2/x/blobs/{DIGEST}", headers={"Content-Length": str(len(DATA))})
    assert mock.client().push_blob_bytes("x", DATA) == DIGEST


def test_mount_201_is_mounted(mock: MockRegistry) -> None:
    mock.expect(
        "POST",
        f"{UPLOADS}?mount={DIGEST}&from=library/src",
        status=201,
        headers={"Location": f"/v2/x/blobs/{DIGEST}", "Docker-Content-Digest": DIGEST},
    )
    result = mock.client().mount_blob("x", DIGEST, "library/src")
    assert result.mounted
    assert result.upload_url is None


def test_mount_202_hands_back_the_session_for_push(mock: MockRegistry) -> None:
    mock.expect(
        "POST", f"{UPLOADS}?mount={DIGEST}&from=src", status=202, headers={"Location": SESSION}
    )
    mock.expect(  # no second POST: the mount's session is reused
        "PUT",
        f"/v2/x/blobs/uploads/6f1c?_state=abc&digest={DIGEST}",
        status=201,
        check=octet_put(DATA),
    )
    client = mock.client()
    result = client.mount_blob("x", DIGEST, "src")
    assert not result.mounted
    assert result.upload_url == f"https://{REGISTRY}{SESSION}"
    client.push_blob("x", DIGEST, [DATA], size=len(DATA), upload_url=result.upload_url)


def test_mount_202_without_a_location_is_not_mounted_and_hands_back_nothing(
    mock: MockRegistry,
) -> None:
    """A broken 202 (no session to reuse) must not fail the blob: the upload opens its own."""
    mock.expect("POST", f"{UPLOADS}?mount={DIGEST}&from=src", status=202)
    result = mock.client().mount_blob("x", DIGEST, "src")
    assert (result.mounted, result.upload_url) == (False, None)


def test_push_with_wrong_digest_cancels_the_session(mock: MockRegistry) -> None:
    # The body fails its digest check while it is being sent, so the PUT
    # never completes (the fake records no PUT) and the session is deleted.
    mock.expect("POST", UPLOADS, status=202, headers={"Location": SESSION})
    mock.expect("DELETE", SESSION, status=204)
    with pytest.raises(DigestMismatchError):
        mock.client().push_blob("x", DIGEST, [b"tampered!!"], size=len(DATA))


def test_push_with_wrong_size_cancels_the_session(mock: MockRegistry) -> None:
    mock.expect("POST", UPLOADS, status=202, headers={"Location": SESSION})
    mock.expect("DELETE", SESSION, status=404)  # already gone: ignored
    with pytest.raises(DigestMismatchError, match="size"):
        mock.client().push_blob("x", DIGEST, [DATA], size=len(DATA) + 1)


def test_chunked_upload_patches_with_content_range(mock: MockRegistry) -> None:
    def patch(body: bytes, content_range: str):
        def check(call: Call) -> None:
            assert call.body == body
            assert call.header("content-range") == content_range
            assert call.header("content-length") == str(len(body))
            assert call.header("transfer-encoding") is None

        return check

    mock.expect("POST", UPLOADS, status=202, headers={"Location": "/v2/x/blobs/uploads/u?_state=0"})
    mock.expect(
        "PATCH",
        "/v2/x/blobs/uploads/u?_state=0",
        status=202,
        headers={"Location": "/v2/x/blobs/uploads/u?_state=1", "Range": "0-3"},
        check=patch(b"0123", "0-3"),
    )
    mock.expect(
        "PATCH",
        "/v2/x/blobs/uploads/u?_state=1",
        status=202,
        headers={"Location": "/v2/x/blobs/uploads/u?_state=2", "Range": "0-7"},
        check=patch(b"4567", "4-7"),
    )
    mock.expect(
        "PATCH",
        "/v2/x/blobs/uploads/u?_state=2",
        status=202,
        headers={"Location": "/v2/x/blobs/uploads/u?_state=3", "Range": "0-9"},
        check=patch(b"89", "8-9"),
    )

    def empty_put(call: Call) -> None:
        assert call.body == b""
        assert call.header("content-length") == "0"

    mock.expect(
        "PUT",
        f"/v2/x/blobs/uploads/u?_state=3&digest={DIGEST}",
        status=201,
        check=empty_put,
    )
    client = mock.client(options=ClientOptions(upload_chunk_size=4))
    client.push_blob("x", DIGEST, iter([b"012", b"34567", b"8", b"9"]), size=len(DATA))


def test_failed_chunked_upload_cancels_the_latest_session_url() -> None:
    mock = MockRegistry()  # not the fixture: one report for this known failure
    mock.expect("POST", UPLOADS, status=202, headers={"Location": "/v2/x/blobs/uploads/u?_state=0"})
    mock.expect(
        "PATCH",
        "/v2/x/blobs/uploads/u?_state=0",
        status=202,
        headers={"Location": "/v2/x/blobs/uploads/u?_state=1"},
    )
    mock.expect("PATCH", "/v2/x/blobs/uploads/u?_state=1", status=500)
    mock.expect("DELETE", "/v2/x/blobs/uploads/u?_state=1", status=204)
    client = mock.client(options=ClientOptions(upload_chunk_size=4))
    with pytest.raises(RegistryError):
        client.push_blob("x", DIGEST, [DATA], size=len(DATA))
    mock.assert_done()


# -- redirects and scheme fallback -------------------------------------------------------------


def test_open_blob_follows_a_redirect_and_streams(mock: MockRegistry) -> None:
    cdn = f"https://cdn.example/{DIGEST}?sig=1"
    mock.expect("GET", f"/v2/x/blobs/{DIGEST}", status=307, headers={"Location": cdn})
    mock.expect("GET", cdn, content=DATA, headers={"Content-Length": str(len(DATA))})
    client = mock.client(options=ClientOptions(chunk_size=4))
    with client.open_blob("x", DIGEST) as blob:
        assert blob.size == len(DATA)
        assert list(blob.iter_chunks()) == [b"0123", b"4567", b"89"]


def test_missing_blob(mock: MockRegistry) -> None:
    mock.expect("HEAD", f"/v2/x/blobs/{DIGEST}", status=404)
    mock.expect(
        "GET", f"/v2/x/blobs/{DIGEST}", status=404, json={"errors": [{"code": "BLOB_UNKNOWN"}]}
    )
    client = mock.client()
    assert client.head_blob("x", DIGEST) is None
    with pytest.raises(NotFoundError), client.open_blob("x", DIGEST):
        pass  # pragma: no cover


INSECURE = RegistryAccess(insecure=True)


def test_insecure_registry_falls_back_to_http(mock: MockRegistry) -> None:
    mock.expect("GET", f"https://{REGISTRY}/v2/", raises=httpx.ConnectError("TLS on a plain port"))
    mock.expect("GET", f"http://{REGISTRY}/v2/", status=503)  # any plain-HTTP answer will do
    mock.expect("GET", f"http://{REGISTRY}/v2/")
    mock.expect("GET", f"http://{REGISTRY}/v2/x/tags/list", json={"tags": ["t"]})
    client = mock.client(access=INSECURE)
    client.ping()
    assert client.list_tags("x") == ["t"]
    assert client.base_url == httpx.URL(f"http://{REGISTRY}/")


def test_tls_meeting_plain_http_bytes_falls_back_without_a_second_probe(
    mock: MockRegistry,
) -> None:
    failure = httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
    failure.__cause__ = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    mock.expect("GET", f"https://{REGISTRY}/v2/", raises=failure)
    mock.expect("GET", f"http://{REGISTRY}/v2/x/tags/list", json={"tags": ["t"]})
    assert mock.client(access=INSECURE).list_tags("x") == ["t"]


HTTPS_PORT_ANSWER = b"Client sent an HTTP request to an HTTPS server.\n"


@pytest.mark.parametrize(
    "https_failure",
    [httpx.ConnectTimeout("slow first TLS handshake"), httpx.ConnectError("reset")],
    ids=["timeout", "connect-error"],
)
def test_insecure_registry_never_remembers_a_failed_https_probe_of_a_tls_port(
    mock: MockRegistry, https_failure: httpx.TransportError
) -> None:
    # The first handshake fails; the port answers plain HTTP like a TLS port
    # does, so the client must not switch to http:// for its lifetime: the
    # failure is transient, and the retry probes again and keeps https.
    mock.expect("GET", f"https://{REGISTRY}/v2/", raises=https_failure)
    mock.expect("GET", f"http://{REGISTRY}/v2/", status=400, content=HTTPS_PORT_ANSWER)
    mock.expect("GET", f"https://{REGISTRY}/v2/", status=401)
    mock.expect("GET", f"https://{REGISTRY}/v2/x/tags/list", json={"tags": ["t"]})
    client = mock.client(access=INSECURE, retry=RetryPolicy(attempts=2, base_delay=0.001))
    assert client.list_tags("x") == ["t"]
    assert client.base_url.scheme == "https"
    mock.assert_done()


def test_insecure_registry_probe_failure_is_transient_and_not_remembered(
    mock: MockRegistry,
) -> None:
    mock.expect("GET", f"https://{REGISTRY}/v2/", raises=httpx.ConnectTimeout("timed out"))
    mock.expect("GET", f"http://{REGISTRY}/v2/", raises=httpx.ConnectTimeout("timed out"))
    client = mock.client(access=INSECURE)
    with pytest.raises(TransientRegistryError, match="HTTPS probe"):
        client.ping()
    mock.expect("GET", f"https://{REGISTRY}/v2/", status=401)
    assert client.base_url.scheme == "https"


def test_insecure_registry_keeps_https_when_it_works(mock: MockRegistry) -> None:
    mock.expect("GET", f"https://{REGISTRY}/v2/", status=401)  # any HTTP answer will do
    mock.expect("GET", f"https://{REGISTRY}/v2/")
    client = mock.client(access=INSECURE)
    client.ping()
    assert client.base_url.scheme == "https"


def test_secure_registry_never_falls_back_to_http(mock: MockRegistry) -> None:
    mock.expect("GET", f"https://{REGISTRY}/v2/", raises=httpx.ConnectError("refused"))
    with pytest.raises(RegistryError):
        mock.client().ping()
    assert all(call.url.scheme == "https" for call in mock.calls)
