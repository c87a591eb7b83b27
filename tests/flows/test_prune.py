"""Pruning against the real registry: convergence, what must survive, every skip, dry-run.

distribution 2.8 deletes manifests only by digest (a tag DELETE is refused),
which also removes every tag of that manifest: exactly the case where a kept
tag sharing a digest with a stale one must survive.
"""

from __future__ import annotations

import pytest

from syncer_core.referrertags import fallback_tag
from tests.flows.helpers import (
    RequestMark,
    Syncer,
    delete_blob,
    first_layer,
    of_kind,
    registry_client,
    seed,
    tag_digests,
    writes,
)
from tests.support.images import TestImage, build_image
from tests.support.registry_server import RegistryServer, free_port
from tests.support.signatures import attestation_index, push_artifact, referrers_index

pytestmark = [pytest.mark.flow, pytest.mark.registry]


def _image(seed_value: int) -> TestImage:
    return build_image(seed_value, layer_sizes=(64,))


def _sig(image: TestImage) -> str:
    return fallback_tag(image.digest) + ".sig"


def _setup(src: RegistryServer, dst: RegistryServer, repo: str) -> dict[str, TestImage]:
    """Source: 1.0.0, 1.1.0, 2.0.0. Destination: an older mirror with stale tags and a signature."""
    images = {tag: _image(n) for n, tag in enumerate(["1.0.0", "1.1.0", "2.0.0", "old", "sig"])}
    for tag in ("1.0.0", "1.1.0", "2.0.0"):
        seed(src, "team/app", [tag], images[tag])
    seed(dst, repo, ["old"], images["old"])
    seed(dst, repo, ["1.0.0"], images["1.0.0"])
    seed(dst, repo, ["alias"], images["2.0.0"])  # stale, but shares 2.0.0's manifest
    seed(dst, repo, [_sig(images["old"])], images["sig"])  # the signature of a stale image
    return images


def test_prune_converges_keeps_shared_digests_and_takes_signatures_along(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    images = _setup(src, dst, "m/app")
    rule = {f"{S}/team/app": {"to": f"{D}/m/app", "latest": 2, "prune": True}}

    run = sync.run(rule)

    assert run.code == 0, run.describe()
    assert tag_digests(dst, "m/app") == {
        "1.1.0": images["1.1.0"].digest,
        "2.0.0": images["2.0.0"].digest,
        "alias": images["2.0.0"].digest,
    }
    assert run.report is not None
    actions = {(p["target"].rsplit(":", 1)[1], p["action"]) for p in run.report["pruned"]}
    assert actions == {
        ("1.0.0", "deleted"),
        ("old", "deleted"),
        (_sig(images["old"]), "deleted"),
        ("alias", "kept"),
    }
    [kept] = [p for p in run.report["pruned"] if p["action"] == "kept"]
    assert "kept tag '2.0.0'" in kept["reason"]
    assert "tags pruned 3" in run.stdout

    mark = RequestMark(dst)
    again = sync.run(rule)
    assert again.code == 0, again.describe()
    # Converged: nothing else is deleted; the kept stale tag costs one refused tag DELETE.
    assert [(w.method, w.path, w.status) for w in writes(mark.since())] == [
        ("DELETE", "/v2/m/app/manifests/alias", 400)
    ]
    assert again.report is not None
    assert [p["action"] for p in again.report["pruned"]] == ["kept"]


def test_dry_run_lists_what_would_be_deleted_and_deletes_nothing(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    images = _setup(src, dst, "m/app")
    before = tag_digests(dst, "m/app")
    mark = RequestMark(dst)

    run = sync.run({f"{S}/team/app": {"to": f"{D}/m/app", "latest": 2}}, "--prune", "--dry-run")

    assert run.code == 0, run.describe()
    assert tag_digests(dst, "m/app") == before
    assert writes(mark.since()) == []
    assert run.report is not None
    would = sorted(p["target"].rsplit(":", 1)[1] for p in run.report["pruned"])
    assert all(p["action"] == "would-delete" for p in run.report["pruned"])
    assert would == sorted(["1.0.0", "old", "alias", _sig(images["old"])])
    assert "would prune 4" in run.stdout


def test_prune_is_skipped_when_listing_fails_selection_is_empty_or_an_image_failed(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    good, broken, stale = _image(40), _image(41), _image(42)
    seed(src, "team/good", ["1.0.0"], good)
    seed(src, "team/broken", ["1.0.0"], good)
    seed(src, "team/broken", ["2.0.0"], broken)
    delete_blob(src, "team/broken", first_layer(broken))  # 2.0.0 cannot be copied
    for repo in ("m/missing", "m/empty", "m/broken"):
        seed(dst, repo, ["stale"], stale)
    mark = RequestMark(dst)
    closed = f"127.0.0.1:{free_port()}"  # nothing listens: its listing fails

    run = sync.run(
        {
            f"{closed}/team/nowhere": {"to": f"{D}/m/missing", "prune": True},
            f"{S}/team/good": {"to": f"{D}/m/empty", "semver": ">=9", "prune": True},
            f"{S}/team/broken": {"to": f"{D}/m/broken", "prune": True},
        },
        "--retries",
        "0",
        auth={**sync.default_auth(), closed: {"insecure": True}},
    )

    assert run.code == 1, run.describe()
    for repo in ("m/missing", "m/empty", "m/broken"):
        assert tag_digests(dst, repo).get("stale") == stale.digest, repo
    assert of_kind(mark.since(), "DELETE", "manifest") == []
    assert run.report is not None
    skipped = {p["target"].split("/", 1)[1]: p["reason"] for p in run.report["pruned"]}
    assert all(p["action"] == "skipped" for p in run.report["pruned"])
    assert skipped["m/missing"].startswith("the rule failed (cannot list tags of")
    assert skipped["m/empty"] == "the selection is empty"
    assert skipped["m/broken"] == "1 image of the rule failed"
    assert run.stderr.count("prune of ") >= 3


def test_the_referrers_index_of_a_pruned_image_goes_with_it(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    kept, old = _image(50), _image(51)
    seed(src, "team/app", ["1.0.0"], kept)
    seed(dst, "m/app", ["old"], old)
    kept_attestation, old_attestation = (
        attestation_index(kept.top, 1),
        attestation_index(old.top, 2),
    )
    with registry_client(dst) as client:
        for image, attestation in ((kept, kept_attestation), (old, old_attestation)):
            push_artifact(client, "m/app", None, attestation)
            tag = fallback_tag(image.digest)
            client.put_manifest("m/app", tag, referrers_index(attestation))

    run = sync.run({f"{S}/team/app": {"to": f"{D}/m/app", "prune": True}})

    assert run.code == 0, run.describe()
    assert set(tag_digests(dst, "m/app")) == {"1.0.0", fallback_tag(kept.digest)}
    with registry_client(dst) as client:
        for manifest in old_attestation.manifests:  # the index and the manifest it holds
            assert client.head_manifest("m/app", manifest.digest) is None
        for manifest in kept_attestation.manifests:
            assert client.head_manifest("m/app", manifest.digest) is not None
