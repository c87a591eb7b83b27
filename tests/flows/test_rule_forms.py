"""Every rule form of the images file, end to end: exactly these tags and digests arrive.

Several rules share one images file (one CLI run), so the Prefect cost stays
small; each destination is then read back through the registry API.
"""

from __future__ import annotations

import httpx
import pytest

from tests.flows.helpers import Syncer, registry_client, seed, tag_digests
from tests.support.images import build_image
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.flow, pytest.mark.registry]

#: An address nothing listens on: a rule sent there would fail.
UNREACHABLE = "127.0.0.1:9"


def _images(*seeds: int):
    return [build_image(s, layer_sizes=(300,)) for s in seeds]


def _catalog(server: RegistryServer) -> list[str]:
    response = httpx.get(f"{server.url}/v2/_catalog", timeout=10)
    response.raise_for_status()
    return sorted(response.json()["repositories"])


def test_every_rule_form_copies_exactly_the_named_tags(
    sync: Syncer, src: RegistryServer, dst: RegistryServer, monkeypatch: pytest.MonkeyPatch
):
    S, D = src.host, dst.host
    a1, a2, l1, l2, l3, pin, r10, r11, r20, ren, pa, pb, env, dflt = _images(*range(100, 114))
    seed(src, "team/all", ["v1"], a1)
    seed(src, "team/all", ["v2"], a2)
    for tag, image in (("t1", l1), ("t2", l2), ("t3", l3)):
        seed(src, "team/list", [tag], image)
    seed(src, "team/pinned", ["moving"], pin)
    for tags, image in ((["1.0", "latest"], r10), (["1.1"], r11), (["2.0"], r20)):
        seed(src, "team/regex", tags, image)
    seed(src, "team/rename", ["t"], ren)
    seed(src, "team/pair", ["a"], pa)
    seed(src, "team/pair", ["b"], pb)
    seed(src, "team/env", ["v1"], env)
    seed(src, "team/default", ["v1"], dflt)
    monkeypatch.setenv("SYNC_TEST_DST", D)
    monkeypatch.setenv("DEFAULT_REGISTRY", D)

    run = sync.run(
        {
            f"{S}/team/all": f"{D}/mirror/all",
            f"{S}/team/list:t1,t2": f"{D}/mirror/list",
            f"{S}/team/pinned@{pin.digest}": [f"{D}/mirror/pinned", f"{D}/mirror/pinned-tag:v9"],
            f"{S}/team/regex:/^1\\./": f"{D}/mirror/regex",
            f"{S}/team/rename:t": f"{D}/mirror/rename:new",
            f"{S}/team/pair:a,b": f"{D}/mirror/pair:x,y",
            f"{S}/team/env:v1": "${SYNC_TEST_DST}/mirror/env",
            f"{S}/team/default:v1": "",
        }
    )

    assert run.code == 0, run.describe()
    assert set(run.statuses().values()) == {"synced"}
    assert len(run.images) == 13
    assert tag_digests(dst, "mirror/all") == {"v1": a1.digest, "v2": a2.digest}
    assert tag_digests(dst, "mirror/list") == {"t1": l1.digest, "t2": l2.digest}
    assert tag_digests(dst, "mirror/regex") == {"1.0": r10.digest, "1.1": r11.digest}
    assert tag_digests(dst, "mirror/rename") == {"new": ren.digest}
    assert tag_digests(dst, "mirror/pair") == {"x": pa.digest, "y": pb.digest}
    assert tag_digests(dst, "mirror/env") == {"v1": env.digest}
    assert tag_digests(dst, "team/default") == {"v1": dflt.digest}
    assert tag_digests(dst, "mirror/pinned-tag") == {"v9": pin.digest}
    assert tag_digests(dst, "mirror/pinned") == {}
    with registry_client(dst) as client:
        # A digest source to an untagged destination is pushed by digest only.
        head = client.head_manifest("mirror/pinned", pin.digest)
        assert head is not None and head.digest == pin.digest
    assert _catalog(dst) == sorted(
        [
            "mirror/all",
            "mirror/env",
            "mirror/list",
            "mirror/pair",
            "mirror/pinned",
            "mirror/pinned-tag",
            "mirror/regex",
            "mirror/rename",
            "team/default",
        ]
    )


def test_legacy_config_and_registry_flag_beats_default_registry_env(
    sync: Syncer, src: RegistryServer, dst: RegistryServer, monkeypatch: pytest.MonkeyPatch
):
    S, D = src.host, dst.host
    v1, v2 = _images(200, 201)
    seed(src, "team/app", ["v1"], v1)
    seed(src, "team/app", ["v2"], v2)
    monkeypatch.setenv("DEFAULT_REGISTRY", UNREACHABLE)
    config = sync.file(
        "legacy.yaml",
        {
            "auth": sync.default_auth(),
            "images": {f"{S}/team/app:v1": "", f"{S}/team/app:v2": f"{D}/legacy/app"},
        },
    )

    run = sync.run(
        None,
        "--config",
        str(config),
        "--images",
        str(sync.tmp_path / "ignored-because-of-config.yaml"),
        "--registry",
        D,
    )

    assert run.code == 0, run.describe()
    assert run.statuses() == {f"{D}/team/app:v1": "synced", f"{D}/legacy/app:v2": "synced"}
    assert tag_digests(dst, "team/app") == {"v1": v1.digest}
    assert tag_digests(dst, "legacy/app") == {"v2": v2.digest}
    assert "--images is ignored because --config is given" in run.stderr
