"""The OCI 1.1 referrers API call: supported (200 index), unsupported (404), filtered, broken."""

from __future__ import annotations

import pytest

from syncer_core import mediatypes as mt
from syncer_core.errors import ManifestError, TransientRegistryError
from syncer_core.registry.referrers import get_referrers
from tests.support.mock_registry import MockRegistry

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
INDEX = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": D2, "size": 10, "artifactType": "x/sig"}
    ],
}


def test_a_registry_with_the_api_answers_an_index():
    mock = MockRegistry()
    mock.expect("GET", f"/v2/team/app/referrers/{D1}", json=INDEX,
                headers={"Content-Type": mt.OCI_INDEX})  # fmt: skip
    with mock.client() as client:
        found = get_referrers(client, "team/app", D1)
    assert found is not None
    assert [(d.digest, d.artifact_type) for d in found.manifests] == [(D2, "x/sig")]
    mock.assert_done()


def test_the_artifact_type_filter_is_sent_as_a_query():
    mock = MockRegistry()
    mock.expect("GET", f"/v2/team/app/referrers/{D1}?artifactType=x%2Fsig", json=INDEX,
                headers={"Content-Type": mt.OCI_INDEX})  # fmt: skip
    with mock.client() as client:
        assert get_referrers(client, "team/app", D1, artifact_type="x/sig") is not None
    mock.assert_done()


def test_404_means_no_referrers_api():
    mock = MockRegistry()
    mock.expect("GET", f"/v2/team/app/referrers/{D1}", status=404, content=b"404 page not found")
    with mock.client() as client:
        assert get_referrers(client, "team/app", D1) is None
    mock.assert_done()


def test_a_body_that_is_not_an_index_is_an_error():
    mock = MockRegistry()
    mock.expect("GET", f"/v2/team/app/referrers/{D1}", json={"schemaVersion": 2, "layers": []},
                headers={"Content-Type": mt.OCI_MANIFEST})  # fmt: skip
    with mock.client() as client, pytest.raises(ManifestError, match="not an image index"):
        get_referrers(client, "team/app", D1)


def test_a_server_error_is_transient():
    mock = MockRegistry()
    mock.expect("GET", f"/v2/team/app/referrers/{D1}", status=503)
    with mock.client() as client, pytest.raises(TransientRegistryError):
        get_referrers(client, "team/app", D1)
