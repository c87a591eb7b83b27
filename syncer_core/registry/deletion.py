"""Deleting from a registry: a tag, or a manifest by digest (for pruning).

Kept apart from `client.py` so the client's core stays as it is: these are
plain functions over a `RegistryClient`. OCI 1.1 lets a registry delete a
tag (`DELETE /v2/<name>/manifests/<tag>`); distribution 2.x refuses that
(400 `DIGEST_INVALID` or 405) and deletes only by digest, which also removes
every tag pointing at the manifest. Callers must check that none of those
tags is one to keep before they delete by digest.
"""

from __future__ import annotations

from syncer_core.digest import is_digest
from syncer_core.registry.client import RegistryClient

__all__ = ["delete_manifest", "delete_tag"]

#: Statuses of a tag DELETE that mean "this registry deletes only by digest".
_UNSUPPORTED = (400, 405)


def delete_tag(client: RegistryClient, repository: str, tag: str) -> bool:
    """Delete one tag, leaving its manifest (and other tags) alone.

    Returns:
        True when the tag is gone (deleted now, or already absent); False
        when the registry does not delete tags (use `delete_manifest`).

    Raises:
        RegistryError: any other failure.
    """
    if is_digest(tag):
        raise ValueError(f"{tag!r} is a digest, not a tag")
    status = _delete(client, repository, tag, f"DELETE tag {repository}:{tag}", _UNSUPPORTED)
    return status not in _UNSUPPORTED


def delete_manifest(client: RegistryClient, repository: str, digest: str) -> bool:
    """Delete a manifest by digest (and, on distribution, every tag pointing to it).

    Returns:
        True when it was deleted now, False when it was already absent.

    Raises:
        RegistryError: the registry refused (e.g. deletes disabled: 405).
    """
    if not is_digest(digest):
        raise ValueError(f"{digest!r} is not a digest")
    return _delete(client, repository, digest, f"DELETE manifest {repository}@{digest}") != 404


def _delete(
    client: RegistryClient,
    repository: str,
    reference: str,
    what: str,
    also_ok: tuple[int, ...] = (),
) -> int:
    """`DELETE /v2/<repository>/manifests/<reference>`; 404 (already gone) is not an error."""
    response = client.retrying(
        lambda: client.send(
            "DELETE", f"/v2/{repository}/manifests/{reference}", what=what, ok=(404, *also_ok)
        )
    )
    return response.status_code
