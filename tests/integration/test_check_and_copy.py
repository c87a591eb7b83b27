"""`check_rule` and `execute_plan` against real registries, without Prefect.

The flows run these two as their only tasks (one check per rule, one copy
per changed image), so their contracts are pinned here directly: what a
check finds, when it raises for a retry, and that a copy moves each blob
once and pushes the tag only after its blobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from syncer_core.errors import TransientRegistryError
from syncer_core.runconfig import load_run_config
from syncer_core.sync.check import check_rule
from syncer_core.sync.engine import execute_plan
from syncer_core.sync.inspect import ImagePlan, Unchanged
from syncer_core.sync.results import ImageResult, ImageStatus
from syncer_core.sync.session import SyncOptions, SyncSession
from tests.flows.helpers import seed, write_document
from tests.support.images import build_image
from tests.support.registry_server import RegistryServer, auth_entry
from tests.support.zoo import FaultProxy, FaultRule

pytestmark = [pytest.mark.registry]


def _session(tmp_path: Path, rules: dict[str, str], auth: dict[str, object]) -> SyncSession:
    images = write_document(tmp_path / "images.yaml", rules)
    auth_file = write_document(tmp_path / "auth.yaml", auth)
    config = load_run_config(images=str(images), auth=str(auth_file))
    session = SyncSession(config.auth.lookup, SyncOptions(proc=3))
    session.rules = config.rules.rules
    return session


@pytest.fixture
def pair(
    fresh_registry: Callable[[str], RegistryServer],
) -> tuple[RegistryServer, RegistryServer]:
    return fresh_registry("plain"), fresh_registry("plain")


def test_check_finds_unchanged_and_changed_images_then_copy_brings_them_over(
    pair: tuple[RegistryServer, RegistryServer], tmp_path: Path
) -> None:
    src, dst = pair
    base = build_image(700, layer_sizes=(4096, 2048))
    moved = build_image(701, layer_sizes=(4096, 1024))
    seed(src, "team/app", ["v1"], base)
    seed(src, "team/app", ["v2"], moved)
    seed(dst, "mirror/app", ["v1"], base)  # v1 is already there
    auth = {s.host: auth_entry(s) for s in (src, dst)}
    session = _session(tmp_path, {f"{src.host}/team/app": f"{dst.host}/mirror/app"}, auth)
    try:
        check = check_rule(session, 0)
        assert check.error is None
        by_tag = {
            item.job.source.tag: item for item in check.found if not isinstance(item, ImageResult)
        }
        assert isinstance(by_tag["v1"], Unchanged)
        plan = by_tag["v2"]
        assert isinstance(plan, ImagePlan)
        before = len(dst.requests())

        result = execute_plan(session, plan)

        assert result.status is ImageStatus.SYNCED
        assert result.digest == moved.digest
        puts = [r for r in dst.requests()[before:] if r.method == "PUT"]
        manifest_puts = [r for r in puts if "/manifests/" in r.path]
        assert [r.path for r in manifest_puts] == ["/v2/mirror/app/manifests/v2"]
        assert puts[-1] is manifest_puts[-1]  # the tag goes last, after every blob
        # Every blob missing at the destination was uploaded exactly once.
        uploads = [r for r in puts if "/blobs/uploads/" in r.path]
        assert len(uploads) == len(plan.blobs) == result.blobs_copied
        head = session.client(plan.job.target).head_manifest("mirror/app", "v2")
        assert head is not None and head.digest == moved.digest
    finally:
        session.close()


def test_a_transient_listing_failure_is_raised_for_a_retry_then_fails_the_rule(
    pair: tuple[RegistryServer, RegistryServer], tmp_path: Path
) -> None:
    src, dst = pair
    seed(src, "team/app", ["v1"], build_image(702))
    always_503 = FaultRule(kinds=("503",), rate=1.0, endpoints=("tags",))
    with FaultProxy(src.host, rules=[always_503]) as proxy:
        auth = {proxy.host: auth_entry(src), dst.host: auth_entry(dst)}
        rules = {f"{proxy.host}/team/app": f"{dst.host}/mirror/app"}
        session = _session(tmp_path, rules, auth)
        try:
            with pytest.raises(TransientRegistryError):
                check_rule(session, 0, raise_transient=True)
            last = check_rule(session, 0, raise_transient=False)
        finally:
            session.close()
    assert last.found == []
    assert last.error is not None and "503" in last.error
