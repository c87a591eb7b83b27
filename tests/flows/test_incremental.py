"""Incremental behaviour, read from both registries' access logs.

An unchanged re-run writes nothing and reads no source manifest; a moved tag
uploads only its new blobs; `--force` re-pushes manifests but no blobs; a
layer shared by two repositories is uploaded once and mounted; `--dry-run`
writes nothing at all.
"""

from __future__ import annotations

import random

import pytest

from tests.flows.helpers import (
    RequestMark,
    Syncer,
    layered_image,
    mounts,
    of_kind,
    seed,
    tag_digests,
    uploaded_digests,
    writes,
)
from tests.support.images import build_image, build_index
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.flow, pytest.mark.registry]


def _layers(seed_value: int, count: int, size: int = 2048) -> list[bytes]:
    rng = random.Random(seed_value)
    return [rng.randbytes(size) for _ in range(count)]


def test_unchanged_rerun_writes_nothing_and_reads_no_source_manifest(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    seed(src, "team/app", ["v1"], build_image(300))
    seed(src, "team/app", ["v2"], build_image(301, image_format="oci"))
    seed(src, "team/multi", ["v1"], build_index(302, attestation="artifact"))
    images = {f"{S}/team/app": f"{D}/mirror/app", f"{S}/team/multi:v1": f"{D}/mirror/multi"}
    first = sync.run(images)
    assert first.code == 0, first.describe()
    assert set(first.statuses().values()) == {"synced"}
    at_src, at_dst = RequestMark(src), RequestMark(dst)

    second = sync.run(images)

    assert second.code == 0, second.describe()
    assert second.statuses() == {
        f"{D}/mirror/app:v1": "skipped",
        f"{D}/mirror/app:v2": "skipped",
        f"{D}/mirror/multi:v1": "skipped",
    }
    assert second.total("blobs_copied") == second.total("blobs_mounted") == 0
    dst_requests, src_requests = at_dst.since(), at_src.since()
    assert writes(dst_requests) == []  # no blob upload or mount, no manifest PUT
    assert of_kind(src_requests, "GET", "manifest") == []
    assert of_kind(src_requests, "GET", "blob") == []
    assert writes(src_requests) == []
    assert "skipped 3" in second.stdout


def test_moved_tag_copies_only_new_blobs_and_force_repushes_manifests_only(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    shared, old, new = _layers(310, 3)
    before = layered_image([shared, old], 311)
    after = layered_image([shared, new], 312)
    seed(src, "team/app", ["v1"], before)
    images = {f"{S}/team/app:v1": f"{D}/mirror/app"}
    first = sync.run(images)
    assert first.code == 0, first.describe()
    assert first.total("blobs_copied") == 3
    seed(src, "team/app", ["v1"], after)  # the tag moves; one layer stays
    at_src, at_dst = RequestMark(src), RequestMark(dst)

    moved = sync.run(images)

    assert moved.code == 0, moved.describe()
    assert tag_digests(dst, "mirror/app") == {"v1": after.digest}
    new_blobs = set(after.blobs) - set(before.blobs)
    assert len(new_blobs) == 2  # the new layer and the new config
    dst_requests = at_dst.since()
    assert sorted(uploaded_digests(dst_requests)) == sorted(new_blobs)
    assert mounts(dst_requests) == []
    fetched = {r.path.rsplit("/", 1)[1] for r in of_kind(at_src.since(), "GET", "blob")}
    assert fetched == new_blobs
    (image,) = moved.images
    assert (image["status"], image["blobs_copied"], image["blobs_skipped"]) == ("synced", 2, 1)
    at_dst = RequestMark(dst)

    forced = sync.run(images, "--force")

    assert forced.code == 0, forced.describe()
    (image,) = forced.images
    assert (image["status"], image["blobs_copied"], image["manifests_pushed"]) == ("synced", 0, 1)
    dst_requests = at_dst.since()
    assert uploaded_digests(dst_requests) == []
    assert [r.path for r in of_kind(dst_requests, "PUT", "manifest")] == [
        "/v2/mirror/app/manifests/v1"
    ]
    assert of_kind(dst_requests, "POST", "upload") == []
    assert tag_digests(dst, "mirror/app") == {"v1": after.digest}


def test_layer_shared_by_two_repositories_is_uploaded_once_then_mounted(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    base, own_a, own_b = _layers(320, 3)
    image_a = layered_image([base, own_a], 321)
    image_b = layered_image([base, own_b], 322)
    seed(src, "team/a", ["v1"], image_a)
    seed(src, "team/b", ["v1"], image_b)
    base_digest = next(d for d, data in image_a.blobs.items() if data == base)

    run = sync.run({f"{S}/team/a": f"{D}/mirror/a", f"{S}/team/b": f"{D}/mirror/b"})

    assert run.code == 0, run.describe()
    requests = dst.requests()
    uploaded = uploaded_digests(requests)
    assert sorted(uploaded) == sorted(set(image_a.blobs) | set(image_b.blobs))  # base once
    (mount,) = mounts(requests)
    assert f"mount={base_digest}" in mount.path.replace("%3A", ":")
    assert run.total("blobs_mounted") == 1
    assert run.total("blobs_copied") == 5
    assert tag_digests(dst, "mirror/a") == {"v1": image_a.digest}
    assert tag_digests(dst, "mirror/b") == {"v1": image_b.digest}


def test_dry_run_prints_the_plan_per_image_and_pushes_nothing(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    present, missing = build_image(330), build_image(331, layer_sizes=(100, 200, 300))
    seed(src, "team/app", ["v1"], present)
    seed(src, "team/app", ["v2"], missing)
    seed(src, "team/copy", ["v2"], missing)  # same blobs, another destination repository
    seed(dst, "mirror/app", ["v1"], present)
    at_dst = RequestMark(dst)

    run = sync.run(
        {f"{S}/team/app": f"{D}/mirror/app", f"{S}/team/copy:v2": f"{D}/mirror/copy"},
        "--dry-run",
        "--rule-concurrency",
        "1",
    )

    assert run.code == 0, run.describe()
    results = run.by_target()
    assert results[f"{D}/mirror/app:v1"]["status"] == "skipped"
    planned = results[f"{D}/mirror/app:v2"]
    assert planned["status"] == "planned"
    assert planned["digest"] == missing.digest
    assert (planned["blobs_copied"], planned["blobs_mounted"], planned["manifests_pushed"]) == (
        4,
        0,
        1,
    )
    assert planned["bytes"] == missing.blob_bytes
    # One rule at a time, in file order: the second repository would mount what the first brings.
    again = results[f"{D}/mirror/copy:v2"]
    assert (again["blobs_copied"], again["blobs_mounted"], again["bytes"]) == (0, 4, 0)
    plan_lines = sorted(line for line in run.stdout.splitlines() if line.startswith("PLAN "))
    assert plan_lines == [
        f"PLAN {S}/team/app:v2 -> {D}/mirror/app:v2: would copy 4 blobs "
        f"({missing.blob_bytes / 1024:.1f} KiB), mount 0, push 1 manifest",
        f"PLAN {S}/team/copy:v2 -> {D}/mirror/copy:v2: would copy 0 blobs (0 B), mount 4, "
        "push 1 manifest",
    ]
    assert writes(at_dst.since()) == []
    assert tag_digests(dst, "mirror/app") == {"v1": present.digest}
    assert tag_digests(dst, "mirror/copy") == {}
    assert "would sync 2" in run.stdout
