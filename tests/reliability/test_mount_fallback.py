"""A refused cross-repository mount, of any kind, falls back to an upload and is remembered.

The destination is a real registry behind the fault proxy's `refuse_mounts`:
401 (Harbor #17097, a project it does not have), 403, 404, 202 (Docker Hub,
GAR: a plain upload session instead of a mount), 400 and a 500 that outlasts
the retries. The ledger offers a mount source for every blob (as if this run
had placed it in another repository), so a mount is always attempted first.
After `MOUNT_REFUSALS` refusals in a row, with none fulfilled, the registry
gets no more mount requests.
"""

from __future__ import annotations

import os
import uuid

import pytest

from syncer_core.digest import compute_digest
from syncer_core.reference import Reference
from syncer_core.registry import RegistryAccess, RegistryClient, RetryPolicy
from syncer_core.registry.uploads import MOUNT_REFUSALS
from syncer_core.sync.inspect import BlobTransfer
from syncer_core.sync.session import SyncSession
from syncer_core.sync.transfer import copy_blob
from tests.reliability.conftest import ProxyFactory
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.registry

BLOBS = MOUNT_REFUSALS + 2
ACCESS = RegistryAccess(insecure=True)


@pytest.fixture(scope="module")
def source_blobs(registry_plain: RegistryServer) -> tuple[str, list[bytes]]:
    repository = "mount-fallback/source"
    blobs = [os.urandom(3000 + n) for n in range(BLOBS)]
    with RegistryClient(registry_plain.host, access=ACCESS) as client:
        for data in blobs:
            client.push_blob_bytes(repository, data)
    return repository, blobs


@pytest.mark.parametrize("status", [401, 403, 404, 202, 400, 500])
def test_every_refused_mount_uploads_instead_and_stops_being_tried(
    proxies: ProxyFactory,
    registry_plain: RegistryServer,
    registry_plain2: RegistryServer,
    source_blobs: tuple[str, list[bytes]],
    status: int,
) -> None:
    proxy = proxies(registry_plain2, refuse_mounts=status)
    source_repository, blobs = source_blobs
    target_repository = f"mount-fallback/{uuid.uuid4().hex[:10]}"
    session = SyncSession(lambda _: ACCESS, retry=RetryPolicy(base_delay=0.01))
    actions = []
    try:
        for data in blobs:
            digest = compute_digest(data)
            session.ledger.record(proxy.host, "mount-fallback/elsewhere", digest, ACCESS)
            transfer = BlobTransfer(
                Reference.parse(f"{registry_plain.host}/{source_repository}"),
                Reference.parse(f"{proxy.host}/{target_repository}"),
                digest,
                len(data),
            )
            actions.append(copy_blob(session, transfer).action)
        target = session.client(Reference.parse(f"{proxy.host}/{target_repository}"))
        for data in blobs:
            assert target.head_blob(target_repository, compute_digest(data)) == len(data)
    finally:
        session.close()
    assert actions == ["copied"] * BLOBS
    mounts = [r for r in proxy.requests() if r.method == "POST" and "mount=" in r.target]
    # a 500 is retried (the policy's attempts), then given up as "not mounted"
    attempts = RetryPolicy().attempts if status == 500 else 1
    assert len(mounts) == MOUNT_REFUSALS * attempts, [(r.target, r.status) for r in mounts]
    assert {r.status for r in mounts} == {status}
