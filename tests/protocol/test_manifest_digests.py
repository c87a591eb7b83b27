"""Manifest digests under sha512 references and signed schema1 (issue 15 #3, #8).

sha512 is a registered OCI digest algorithm: a manifest fetched by a sha512
digest is verified under sha512 (it used to pass unchecked), and a push by
sha512 digest succeeds when the bytes match (it used to always mismatch).
distribution cannot store manifests under sha512, hence the scripted registry.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncer_core.digest import compute_digest
from syncer_core.errors import DigestMismatchError
from syncer_core.manifest import RawManifest
from syncer_core.mediatypes import OCI_MANIFEST
from tests.support.mock_registry import MockRegistry

DATA = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}'
MANIFEST = RawManifest(OCI_MANIFEST, DATA)
SHA512 = compute_digest(DATA, "sha512")
OTHER512 = compute_digest(b"other", "sha512")


@pytest.fixture
def mock() -> Iterator[MockRegistry]:
    registry = MockRegistry()
    yield registry
    registry.assert_done()


def test_manifest_fetched_by_sha512_is_verified_under_sha512(mock: MockRegistry) -> None:
    headers = {"Content-Type": OCI_MANIFEST}
    mock.expect("GET", f"/v2/app/manifests/{SHA512}", content=DATA, headers=headers)
    mock.expect("GET", f"/v2/app/manifests/{OTHER512}", content=DATA, headers=headers)
    client = mock.client()
    assert client.get_manifest("app", SHA512).data == DATA
    with pytest.raises(DigestMismatchError) as info:
        client.get_manifest("app", OTHER512)
    assert info.value.expected == OTHER512 and info.value.actual == SHA512


def test_sha512_docker_content_digest_of_a_tag_is_verified(mock: MockRegistry) -> None:
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": OTHER512}
    mock.expect("GET", "/v2/app/manifests/v1", content=DATA, headers=headers)
    with pytest.raises(DigestMismatchError):
        mock.client().get_manifest("app", "v1")


def test_manifest_pushed_by_sha512_succeeds_when_the_bytes_match(mock: MockRegistry) -> None:
    mock.expect(
        "PUT",
        f"/v2/app/manifests/{SHA512}",
        status=201,
        headers={"Docker-Content-Digest": SHA512},
        check=lambda call: None if call.body == DATA else pytest.fail("bytes changed"),
    )
    assert mock.client().put_manifest("app", SHA512, MANIFEST) == MANIFEST.digest
    with pytest.raises(DigestMismatchError):  # wrong bytes for the reference: nothing sent
        mock.client().put_manifest("app", OTHER512, MANIFEST)


def test_registry_storing_under_another_sha512_is_a_mismatch(mock: MockRegistry) -> None:
    mock.expect(
        "PUT", "/v2/app/manifests/v1", status=201, headers={"Docker-Content-Digest": OTHER512}
    )
    with pytest.raises(DigestMismatchError, match="stored manifest"):
        mock.client().put_manifest("app", "v1", MANIFEST)
