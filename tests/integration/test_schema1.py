"""Signed Docker schema1 images from distribution sync (issue 15 #3), against real registries.

distribution with `compatibility.schema1.enabled` converts a schema2 image
to signed schema1 for a client that accepts only schema1, and stores a
signed schema1 pushed to it; it signs again on every GET, so the bytes
differ each time, while `Docker-Content-Digest` (the payload's digest) is
stable. A registry without schema1 support refuses the push: that image
fails with a reason naming schema1, the others are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syncer_core import mediatypes as mt
from syncer_core.manifest import RawManifest
from syncer_core.plan import SyncJob
from syncer_core.reference import Reference
from syncer_core.registry import RegistryAccess, RetryPolicy
from syncer_core.sync.engine import run_jobs
from syncer_core.sync.results import ImageStatus
from syncer_core.sync.session import SyncSession
from tests.integration.helpers import unique
from tests.support.registry_server import RegistryServer, access_for
from tests.support.sync_helpers import registry_client, seed_signed_schema1

pytestmark = [pytest.mark.registry]

Fresh = Callable[..., RegistryServer]


def test_signed_schema1_is_read_by_tag_and_by_digest_although_resigned_on_every_get(
    fresh_registry: Fresh,
) -> None:
    source = fresh_registry("plain", schema1=True)
    repo = unique("s1/app")
    digest = seed_signed_schema1(source, repo, "v1")
    with registry_client(source) as client:
        first = client.get_manifest(repo, "v1")
        again = client.get_manifest(repo, digest)
    assert first.media_type == mt.DOCKER_SCHEMA1_SIGNED
    assert first.data != again.data  # signed again by distribution
    assert first.digest == again.digest == digest
    assert RawManifest(first.media_type, first.data).matches(digest)


def test_signed_schema1_syncs_with_its_digest_or_fails_naming_schema1(
    fresh_registry: Fresh,
) -> None:
    source = fresh_registry("plain", schema1=True)
    accepting = fresh_registry("plain", schema1=True)
    refusing = fresh_registry("plain")  # distribution 2.8's default: no schema1
    repo = unique("s1/app")
    digest = seed_signed_schema1(source, repo, "v1")
    servers = {s.host: s for s in (source, accepting, refusing)}

    def lookup(reference: Reference) -> RegistryAccess:
        return access_for(servers[reference.registry])

    retry = RetryPolicy(attempts=3, base_delay=0.01)
    session = SyncSession(lookup, retry=retry)
    jobs = [
        SyncJob(
            source=Reference.parse(f"{source.host}/{repo}:v1"),
            target=Reference.parse(f"{dst.host}/mirror/app:v1"),
            rule="schema1",
        )
        for dst in (accepting, refusing)
    ]
    try:
        synced, refused = run_jobs(session, jobs)
    finally:
        session.close()

    assert synced.status is ImageStatus.SYNCED, synced.reason
    assert synced.digest == digest
    with registry_client(accepting) as client:
        head = client.head_manifest("mirror/app", "v1")
        assert head is not None and head.digest == digest
        assert client.get_manifest("mirror/app", digest).digest == digest
    assert refused.status is ImageStatus.FAILED
    assert refused.reason.startswith("ManifestRejectedError: "), refused.reason
    assert "schema1" in refused.reason
    manifest_puts = [
        r for r in refusing.requests() if r.method == "PUT" and "/manifests/" in r.path
    ]
    assert len(manifest_puts) == 1  # refused at once, not retried
