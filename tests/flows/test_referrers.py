"""Signatures and attestations follow their images, against the real registry.

distribution 2.8 has no referrers API (404), so the source publishes the way
cosign and the referrers tag schema do on such registries: a `.sig` tag per
signed image, and a `sha256-<child>` index listing an attestation index whose
`subject` is one child of a multi-platform image. Everything must arrive
with the same digests, after its subject, and a second run writes nothing.
"""

from __future__ import annotations

from collections import Counter

import pytest

from syncer_core.referrertags import fallback_tag
from tests.flows.helpers import (
    RequestMark,
    Syncer,
    auth_entry,
    registry_client,
    seed,
    tag_digests,
    writes,
)
from tests.support.images import build_image, build_index
from tests.support.registry_server import RegistryServer
from tests.support.signatures import (
    attestation_index,
    cosign_signature,
    push_artifact,
    referrers_index,
    sign,
)
from tests.support.zoo import FaultProxy

pytestmark = [pytest.mark.flow, pytest.mark.registry]


def test_signatures_and_attestations_are_mirrored_with_exact_digests_then_unchanged(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    single = build_image(70, layer_sizes=(128,))
    multi = build_index(71, layer_sizes=(128,))
    child = multi.children[0]
    seed(src, "team/app", ["v1"], single)
    seed(src, "team/app", ["v2"], multi)
    attestation = attestation_index(child)
    index = referrers_index(attestation)
    with registry_client(src) as client:
        signature = sign(client, "team/app", single, f"{S}/team/app:v1")
        multi_sig = cosign_signature(multi.top, f"{S}/team/app:v2", nonce=1)
        push_artifact(client, "team/app", fallback_tag(multi.digest) + ".att", multi_sig)
        push_artifact(client, "team/app", None, attestation)
        client.put_manifest("team/app", fallback_tag(child.digest), index)
    rule = {f"{S}/team/app": {"to": f"{D}/m/app", "referrers": True}}

    run = sync.run(rule)

    assert run.code == 0, run.describe()
    assert tag_digests(dst, "m/app") == {
        "v1": single.digest,
        "v2": multi.digest,
        fallback_tag(single.digest) + ".sig": signature.digest,
        fallback_tag(multi.digest) + ".att": multi_sig.digest,
        fallback_tag(child.digest): index.digest,  # the source's own index bytes
    }
    with registry_client(dst) as client:
        for manifest in attestation.manifests:
            head = client.head_manifest("m/app", manifest.digest)
            assert head is not None and head.digest == manifest.digest
    assert run.report is not None
    copied = {r["target"].split("/", 1)[1]: r["status"] for r in run.report["referrers"]}
    assert copied == {
        f"m/app:{fallback_tag(single.digest)}.sig": "synced",
        f"m/app:{fallback_tag(multi.digest)}.att": "synced",
        f"m/app@{attestation.digest}": "synced",
        f"m/app:{fallback_tag(child.digest)}": "synced",
    }
    # Only v1 and v2 are images of the rule: the referrer tags came as referrers.
    assert sorted(run.statuses()) == [f"{D}/m/app:v1", f"{D}/m/app:v2"]

    mark = RequestMark(dst)
    again = sync.run(rule)
    assert again.code == 0, again.describe()
    assert writes(mark.since()) == []
    assert again.report is not None
    assert {r["status"] for r in again.report["referrers"]} == {"skipped"}
    assert len(again.report["referrers"]) == 4


def test_the_fallback_index_at_the_destination_is_merged_and_the_flag_works(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    image = build_image(80, layer_sizes=(128,))
    seed(src, "team/app", ["v1"], image)
    ours = attestation_index(image.top, nonce=1)
    theirs = attestation_index(image.top, nonce=2)  # only at the destination
    with registry_client(src) as client:
        push_artifact(client, "team/app", None, ours)
        client.put_manifest("team/app", fallback_tag(image.digest), referrers_index(ours))
    seed(dst, "m/app", ["v1"], image)
    with registry_client(dst) as client:
        push_artifact(client, "m/app", None, theirs)
        client.put_manifest("m/app", fallback_tag(image.digest), referrers_index(theirs))

    run = sync.run({f"{S}/team/app:v1": f"{D}/m/app"}, "--referrers")

    assert run.code == 0, run.describe()
    with registry_client(dst) as client:
        merged = client.get_manifest("m/app", fallback_tag(image.digest)).parsed
        for manifest in ours.manifests:
            assert client.head_manifest("m/app", manifest.digest) is not None
    listed = [entry.digest for entry in merged.manifests]  # type: ignore[union-attr]
    assert listed == [theirs.digest, ours.digest]
    assert run.statuses() == {f"{D}/m/app:v1": "skipped"}  # the image itself was unchanged


def test_a_source_with_the_referrers_api_fills_the_fallback_index_of_a_destination_without(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    D = dst.host
    image = build_image(90, layer_sizes=(128,))
    seed(src, "team/app", ["v1"], image)
    attestation = attestation_index(image.top, nonce=3)
    with registry_client(src) as client:
        push_artifact(client, "team/app", None, attestation)  # by digest only: no tag schema
    with FaultProxy(src.host) as proxy:
        proxy.override_referrers("team/app", image.digest, referrers_index(attestation).data)
        auth = {proxy.host: {"insecure": True}, D: auth_entry(dst)}
        rule = {f"{proxy.host}/team/app:v1": {"to": f"{D}/m/app", "referrers": True}}

        run = sync.run(rule, auth=auth)
        mark = RequestMark(dst)
        again = sync.run(rule, auth=auth)

    assert run.code == 0, run.describe()
    with registry_client(dst) as client:
        fallback = client.get_manifest("m/app", fallback_tag(image.digest)).parsed
        for manifest in attestation.manifests:
            assert client.head_manifest("m/app", manifest.digest) is not None
    assert [e.digest for e in fallback.manifests] == [attestation.digest]  # type: ignore[union-attr]
    assert run.report is not None
    assert {r["status"] for r in run.report["referrers"]} == {"synced"}
    assert again.code == 0, again.describe()
    assert writes(mark.since()) == []


def _task_names(fragment: str) -> Counter[str]:
    """Names of the task runs the harness's API recorded whose name contains `fragment`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=fragment))
        )
    return Counter(run.name for run in runs)


def test_one_referrers_and_one_prune_task_per_rule_never_one_per_unchanged_image(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    images = [build_image(95 + n, layer_sizes=(32,)) for n in range(3)]
    for n, image in enumerate(images):
        seed(src, "team/app", [f"1.0.{n}"], image)
    with registry_client(src) as client:
        sign(client, "team/app", images[0], f"{S}/team/app:1.0.0")
    rule = {f"{S}/team/app": {"to": f"{D}/m/app", "referrers": True, "prune": True}}

    first = sync.run(rule)
    second = sync.run(rule)

    assert first.code == second.code == 0, second.describe()
    assert second.report is not None and second.report["pruned"] == []
    assert {r["status"] for r in second.report["referrers"]} == {"skipped"}
    assert _task_names(f"%{D}/m/app%") == {
        f"check {S}/team/app -> {D}/m/app": 2,
        **{f"copy {D}/m/app:1.0.{n}": 1 for n in range(3)},  # the first run only
        f"referrers {D}/m/app": 2,
        f"prune {D}/m/app": 2,
    }
