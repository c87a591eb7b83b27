"""Cross-repository mounts that cannot work fall back to streaming (issue 15 #5, #7).

One token registry, two users: `syncer` may do anything, `team-b` only
under `team-b/`. A blob `syncer` placed in `team-a/app` is in the run's
ledger, but `team-b` may not pull from there: distribution refuses that
mount with 401. Such a repository is no mount source for `team-b`, and a
refused mount streams the blob instead of failing the image. A mount's
upload session (202) is cancelled when the source then fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from syncer_core.errors import NotFoundError
from syncer_core.plan import SyncJob
from syncer_core.reference import Reference
from syncer_core.registry import RegistryAccess
from syncer_core.sync.engine import run_jobs
from syncer_core.sync.inspect import BlobTransfer
from syncer_core.sync.results import ImageStatus
from syncer_core.sync.session import SyncOptions, SyncSession
from syncer_core.sync.transfer import copy_blob
from tests.integration.helpers import unique
from tests.support.images import TestImage, build_image, push_image
from tests.support.registry_server import RegistryServer, access_for
from tests.support.sync_helpers import registry_client

pytestmark = [pytest.mark.registry]

Fresh = Callable[..., RegistryServer]


class TwoTeams:
    """A plain source with one image and a token registry with two users."""

    def __init__(self, fresh: Fresh) -> None:
        self.src = fresh("plain")
        self.dst = fresh("token")
        assert self.dst.token_server is not None
        password = secrets.token_urlsafe(12)
        self.dst.token_server.add_user("team-b", password, ["team-b/"])
        self.team_a = access_for(self.dst)
        self.team_b = RegistryAccess(insecure=True, username="team-b", password=SecretStr(password))
        self.repo = unique("mount/app")
        self.image: TestImage = build_image(2000, layer_sizes=(3000, 1000))
        with registry_client(self.src) as client:
            push_image(client, self.repo, "v1", self.image)

    def lookup(self, reference: Reference) -> RegistryAccess:
        if reference.registry == self.src.host:
            return access_for(self.src)
        return self.team_b if reference.repository.startswith("team-b/") else self.team_a

    def job(self, target_repository: str) -> SyncJob:
        return SyncJob(
            source=Reference.parse(f"{self.src.host}/{self.repo}:v1"),
            target=Reference.parse(f"{self.dst.host}/{target_repository}:v1"),
            rule=target_repository,
        )


def test_two_credentials_on_one_registry_each_stream_what_the_other_may_not_mount(
    fresh_registry: Fresh,
) -> None:
    teams = TwoTeams(fresh_registry)
    session = SyncSession(teams.lookup, SyncOptions(proc=2))
    try:
        [first] = run_jobs(session, [teams.job("team-a/app")])
        [second] = run_jobs(session, [teams.job("team-b/app")])
        [third] = run_jobs(session, [teams.job("team-a/other")])
    finally:
        session.close()
    assert first.status is ImageStatus.SYNCED, first.reason
    assert second.status is ImageStatus.SYNCED, second.reason
    blobs = len(teams.image.blobs)
    assert (second.blobs_copied, second.blobs_mounted) == (blobs, 0)
    assert (third.blobs_copied, third.blobs_mounted) == (0, blobs)  # same credential: mounted
    with registry_client(teams.dst) as client:
        head = client.head_manifest("team-b/app", "v1")
        assert head is not None and head.digest == teams.image.digest


def test_a_refused_mount_streams_the_blob(fresh_registry: Fresh) -> None:
    teams = TwoTeams(fresh_registry)
    [first] = run_jobs(SyncSession(teams.lookup), [teams.job("team-a/app")])
    assert first.status is ImageStatus.SYNCED, first.reason
    session = SyncSession(teams.lookup)
    digest, data = next(iter(teams.image.blobs.items()))
    job = teams.job("team-b/app")
    # As if team-b had read team-a/app: the mount is offered, and refused (401).
    session.ledger.record(teams.dst.host, "team-a/app", digest, teams.team_b)
    try:
        outcome = copy_blob(session, BlobTransfer(job.source, job.target, digest, len(data)))
    finally:
        session.close()
    assert outcome.action == "copied"
    mounts = [r for r in teams.dst.requests() if "mount=" in r.path]
    assert [r.status for r in mounts][-1] == 401
    with registry_client(teams.dst) as client:
        assert client.head_blob("team-b/app", digest) == len(data)


def test_a_mount_session_is_cancelled_when_the_source_blob_fails(fresh_registry: Fresh) -> None:
    src, dst = fresh_registry("plain"), fresh_registry("plain")
    accesses = {src.host: access_for(src), dst.host: access_for(dst)}
    session = SyncSession(lambda reference: accesses[reference.registry])
    digest = "sha256:" + "ab" * 32  # in no repository: the mount opens a session (202)
    source = Reference.parse(f"{src.host}/{unique('gone/app')}:v1")
    target = Reference.parse(f"{dst.host}/{unique('mirror/app')}:v1")
    session.ledger.record(dst.host, "elsewhere/app", digest, accesses[dst.host])
    try:
        with pytest.raises(NotFoundError):  # the source has no such blob
            copy_blob(session, BlobTransfer(source, target, digest, 10))
    finally:
        session.close()
    uploads = [
        (r.method, r.status) for r in dst.requests() if f"/v2/{target.repository}/blobs/" in r.path
    ]
    assert uploads == [("POST", 202), ("DELETE", 204)]
