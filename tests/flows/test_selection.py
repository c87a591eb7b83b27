"""Tag filters of the mapping form, end to end: exactly these tags arrive.

One source repository with release, pre-release, `v`-prefixed, build-metadata
and non-version tags; one CLI run with a rule per filter (alone and
combined, YAML and JSON); every destination is read back through the
registry API.
"""

from __future__ import annotations

import pytest

from tests.flows.helpers import Syncer, seed, tag_digests
from tests.support.images import build_image
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.flow, pytest.mark.registry]

TAGS = [
    "latest", "3.3.9", "v3.4.0", "3.4.1", "3.4.2-rc.1", "3.4.2", "3.5.0-alpha.1", "3.5.0",
    "3.5.0_build.7", "3.5.1", "4.0.0-rc.1", "4.0.0", "3.5.1-debug",
]  # fmt: skip


def _seed_tags(src: RegistryServer, repository: str) -> dict[str, str]:
    digests = {}
    for n, tag in enumerate(TAGS):
        image = build_image(900 + n, layer_sizes=(64,))
        seed(src, repository, [tag], image)
        digests[tag] = image.digest
    return digests


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_each_filter_alone_and_combined_selects_exact_tags(
    sync: Syncer, src: RegistryServer, dst: RegistryServer, fmt: str
):
    S, D = src.host, dst.host
    digests = _seed_tags(src, "team/etcd")
    # The images file maps each key once: the keys differ in their own selection.
    images = {
        f"{S}/team/etcd": {"to": f"{D}/m/exclude", "exclude": ["-rc", "alpha", "^v"]},
        f"{S}/team/etcd:/./": {"to": f"{D}/m/semver", "semver": ">=3.4, <4"},
        f"{S}/team/etcd:/^4/": {"to": f"{D}/m/prerelease", "semver": ">=4.0.0-rc.0"},
        f"{S}/team/etcd:/^[0-9v]/": {"to": f"{D}/m/latest", "latest": 2},
        f"{S}/team/etcd:/^3\\./": {
            "to": f"{D}/m/combined",
            "exclude": ["debug"],
            "semver": ">=3.4.2-rc.0, <3.5.1",
            "latest": 2,
        },
    }
    auth = sync.file("auth.yaml", sync.default_auth())
    files = sync.file(f"images.{fmt}", images)

    run = sync.run(None, "--images", str(files), "--auth", str(auth))

    assert run.code == 0, run.describe()

    def expect(*tags: str) -> dict[str, str]:
        return {tag: digests[tag] for tag in tags}

    # Every tag but the -rc, alpha and v-prefixed ones.
    assert tag_digests(dst, "m/exclude") == expect(
        "latest", "3.3.9", "3.4.1", "3.4.2", "3.5.0", "3.5.0_build.7", "3.5.1", "4.0.0",
        "3.5.1-debug",
    )  # fmt: skip
    # Pre-releases out of a plain range; `v` prefix and `_build` metadata in.
    assert tag_digests(dst, "m/semver") == expect(
        "v3.4.0", "3.4.1", "3.4.2", "3.5.0", "3.5.0_build.7", "3.5.1"
    )
    # A range naming a pre-release admits that version's pre-releases; key `:/4/` first.
    assert tag_digests(dst, "m/prerelease") == expect("4.0.0-rc.1", "4.0.0")
    # latest counts pre-releases; `latest` (the tag) does not parse and is dropped.
    assert tag_digests(dst, "m/latest") == expect("4.0.0-rc.1", "4.0.0")
    # include `^3\.` → exclude debug → semver (admits 3.4.2-rc.1, not 3.5.0-alpha.1, not
    # 3.5.1) → latest 2: 3.5.0 and 3.4.2, with 3.5.0_build.7 the same version as 3.5.0.
    assert tag_digests(dst, "m/combined") == expect("3.4.2", "3.5.0", "3.5.0_build.7")
    assert len(run.images) == 9 + 6 + 2 + 2 + 3
    assert set(run.statuses().values()) == {"synced"}
