"""Multi-arch images and the `--os`/`--arch` filters, end to end.

The source index has linux/amd64, linux/arm64 and linux/arm/v7 children plus
an attestation manifest whose index entry has no `platform`. Unfiltered, the
index is copied byte for byte (same digest, attestation included); filtered,
a smaller index holding exactly the matching children is pushed.
"""

from __future__ import annotations

import pytest

from tests.flows.helpers import RequestMark, Syncer, index_platforms, registry_client, seed, writes
from tests.support.images import DEFAULT_PLATFORMS, build_image, build_index
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.flow, pytest.mark.registry]

AMD64, ARM64, ARMV7 = DEFAULT_PLATFORMS


def _seed_sources(src: RegistryServer):
    """Seed the multi-arch and single images; return the multi-arch one."""
    multi = build_index(400, attestation="artifact")
    single = build_image(401)  # linux/amd64 (read from its config)
    seed(src, "team/multi", ["v1"], multi)
    seed(src, "team/single", ["v1"], single)
    return multi


def _rules(src: RegistryServer, dst: RegistryServer) -> dict[str, str]:
    S, D = src.host, dst.host
    return {f"{S}/team/multi:v1": f"{D}/mirror/multi", f"{S}/team/single:v1": f"{D}/mirror/single"}


def test_unfiltered_copy_keeps_the_index_digest_and_the_attestation(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    multi = _seed_sources(src)

    run = sync.run(_rules(src, dst))

    assert run.code == 0, run.describe()
    assert set(run.statuses().values()) == {"synced"}
    with registry_client(dst) as client:
        head = client.head_manifest("mirror/multi", "v1")
        assert head is not None and head.digest == multi.digest
        assert client.get_manifest("mirror/multi", "v1").data == multi.top.data
    # The attestation entry (no platform) is kept, and its manifest was pushed.
    assert index_platforms(dst, "mirror/multi", "v1") == [AMD64, ARM64, ARMV7, None]
    assert run.by_target()[f"{dst.host}/mirror/multi:v1"]["manifests_pushed"] == 5


@pytest.mark.parametrize(
    ("flags", "platforms", "single_status"),
    [
        (["--arch", "arm64"], [ARM64], "skipped"),
        (["--arch", "amd64,arm64"], [AMD64, ARM64], "synced"),
        (["--arch", "amd64", "--arch", "arm64"], [AMD64, ARM64], "synced"),
        (["--arch", "arm:v7"], [ARMV7], "skipped"),
    ],
    ids=["arm64", "comma-list", "repeated-flag", "arm-variant"],
)
def test_arch_filter_pushes_an_index_of_exactly_the_matching_children(
    sync: Syncer,
    src: RegistryServer,
    dst: RegistryServer,
    flags: list[str],
    platforms: list[tuple[str, str, str | None]],
    single_status: str,
):
    multi = _seed_sources(src)
    D = dst.host

    run = sync.run(_rules(src, dst), *flags)

    assert run.code == 0, run.describe()
    assert run.statuses() == {
        f"{D}/mirror/multi:v1": "synced",
        f"{D}/mirror/single:v1": single_status,
    }
    assert index_platforms(dst, "mirror/multi", "v1") == platforms
    wanted = set(platforms)
    with registry_client(dst) as client:
        head = client.head_manifest("mirror/multi", "v1")
        assert head is not None and head.digest != multi.digest
        assert run.by_target()[f"{D}/mirror/multi:v1"]["digest"] == head.digest
        for spec, child in zip(multi.platforms, multi.children, strict=False):
            present = client.head_manifest("mirror/multi", child.digest) is not None
            assert present == (spec in wanted), spec
        attestation = multi.children[-1]
        assert client.head_manifest("mirror/multi", attestation.digest) is None
        has_single = client.head_manifest("mirror/single", "v1") is not None
        assert has_single == (single_status == "synced")


def test_filter_matching_nothing_skips_the_images_without_failing(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    _seed_sources(src)
    at_dst = RequestMark(dst)

    run = sync.run(_rules(src, dst), "--arch", "s390x")

    assert run.code == 0, run.describe()
    results = run.by_target()
    assert {r["status"] for r in results.values()} == {"skipped"}
    assert "s390x" in results[f"{dst.host}/mirror/multi:v1"]["reason"]
    assert writes(at_dst.since()) == []
