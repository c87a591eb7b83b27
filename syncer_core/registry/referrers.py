"""The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>`.

A plain function over a `RegistryClient` (the client's core stays as it
is). A registry that implements the API answers 200 with an OCI index of
the manifests whose `subject` is the digest (an empty index when there are
none); one that does not answers 404, and callers then use the referrers
tag schema (`sha256-<hex>`) instead.
"""

from __future__ import annotations

from syncer_core.digest import is_digest
from syncer_core.errors import ManifestError
from syncer_core.manifest import MAX_MANIFEST_BYTES, ImageIndex, RawManifest, detect_media_type
from syncer_core.registry.client import RegistryClient

__all__ = ["get_referrers"]


def get_referrers(
    client: RegistryClient, repository: str, digest: str, artifact_type: str | None = None
) -> ImageIndex | None:
    """The referrers index of `digest`, or None when the registry has no referrers API.

    Args:
        client: the registry.
        repository: e.g. `team/app`.
        digest: the subject manifest's digest.
        artifact_type: ask only for referrers of this artifact type (the
            registry may ignore it; it then omits `OCI-Filters-Applied`).

    Raises:
        RegistryError: any failure but a 404; ManifestError for a body that
            is not an index.
    """
    if not is_digest(digest):
        raise ValueError(f"{digest!r} is not a digest")
    params = {"artifactType": artifact_type} if artifact_type else None
    what = f"GET referrers {repository}@{digest}"
    response = client.retrying(
        lambda: client.send(
            "GET", f"/v2/{repository}/referrers/{digest}", what=what, ok=(404,), params=params
        )
    )
    if response.status_code == 404:
        return None
    data = response.content
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{what}: referrers index larger than {MAX_MANIFEST_BYTES} bytes")
    parsed = RawManifest(detect_media_type(data, response.headers.get("content-type")), data).parsed
    if not isinstance(parsed, ImageIndex):
        raise ManifestError(f"{what}: the answer is not an image index")
    return parsed
