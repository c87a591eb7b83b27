"""Tag and manifest DELETE: what each registry answer means for pruning."""

from __future__ import annotations

import pytest

from syncer_core.errors import PermissionDeniedError, RegistryError
from syncer_core.registry.deletion import delete_manifest, delete_tag
from tests.support.mock_registry import MockRegistry

D1 = "sha256:" + "1" * 64


@pytest.mark.parametrize(
    ("status", "deleted"),
    [(202, True), (200, True), (404, True), (400, False), (405, False)],
)
def test_delete_tag_tells_deleted_from_unsupported(status, deleted):
    mock = MockRegistry()
    mock.expect("DELETE", "/v2/team/app/manifests/old", status=status)
    with mock.client() as client:
        assert delete_tag(client, "team/app", "old") is deleted
    mock.assert_done()


def test_delete_tag_raises_on_other_failures():
    mock = MockRegistry()
    mock.expect("DELETE", "/v2/team/app/manifests/old", status=403)
    with mock.client() as client, pytest.raises(PermissionDeniedError):
        delete_tag(client, "team/app", "old")


@pytest.mark.parametrize(("status", "deleted"), [(202, True), (404, False)])
def test_delete_manifest(status, deleted):
    mock = MockRegistry()
    mock.expect("DELETE", f"/v2/team/app/manifests/{D1}", status=status)
    with mock.client() as client:
        assert delete_manifest(client, "team/app", D1) is deleted
    mock.assert_done()


def test_delete_manifest_with_deletes_disabled_raises():
    mock = MockRegistry()
    mock.expect("DELETE", f"/v2/team/app/manifests/{D1}", status=405)
    with mock.client() as client, pytest.raises(RegistryError, match="405"):
        delete_manifest(client, "team/app", D1)


def test_arguments_are_checked_before_any_request():
    mock = MockRegistry()
    with mock.client() as client:
        with pytest.raises(ValueError, match="is a digest"):
            delete_tag(client, "team/app", D1)
        with pytest.raises(ValueError, match="not a digest"):
            delete_manifest(client, "team/app", "old")
    mock.assert_done()
