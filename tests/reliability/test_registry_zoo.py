"""The registry zoo matrix: every named registry as the destination, three as the source.

One set of source images (an OCI index with an attestation, a Docker
manifest list, an image with a 64 MiB layer) is seeded once per module; each
profile (`tests/support/zoo/profiles.py`) stands in front of a real
`docker-registry`, the CLI mirrors the set through it, and then: exit 0,
exact digests, skopeo reads every mirrored image back (`inspect --raw` equal
to the source bytes, `copy` to an `oci:` layout), and the profile's quirk was
really met (its counter moved). Request counts by kind and the fallbacks
taken are recorded per profile (`record_property`, and a printed line).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import CliRunner
from tests.reliability.helpers import MiB, client_for, seed_large_image
from tests.reliability.zoo_runs import mirror, upstream_for
from tests.support.images import TestImage, build_index, push_image
from tests.support.registry_server import RegistryServer, auth_entry
from tests.support.zoo import FaultProxy, FaultRule, ProxyStats, profile

pytestmark = [pytest.mark.flow, pytest.mark.registry]

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
BIG = 64 * MiB
_RUN = uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class SourceSet:
    """The seeded images: `name -> (manifest bytes, digest)`, tag `v1` in `<prefix>/<name>`."""

    prefix: str
    manifests: dict[str, tuple[bytes, str]]


def _seed(server: RegistryServer, prefix: str) -> SourceSet:
    index = build_index(901, image_format="oci", attestation="unknown")
    listing = build_index(902, image_format="docker")
    found: dict[str, tuple[bytes, str]] = {}
    images: dict[str, TestImage] = {"index": index, "list": listing}
    with client_for(server) as client:
        for name, image in images.items():
            push_image(client, f"{prefix}/{name}", "v1", image)
            found[name] = (image.top.data, image.digest)
        big_digest, _ = seed_large_image(server, f"{prefix}/big", "v1", BIG, seed=903)
        raw = client.get_manifest(f"{prefix}/big", "v1")
        found["big"] = (raw.data, big_digest)
    return SourceSet(prefix, found)


@pytest.fixture(scope="module")
def plain_source(registry_plain: RegistryServer) -> SourceSet:
    return _seed(registry_plain, f"zoo-{_RUN}/src")


@pytest.fixture(scope="module")
def token_source(registry_token: RegistryServer) -> SourceSet:
    return _seed(registry_token, f"zoo-{_RUN}/src")


@pytest.fixture(scope="module")
def basic_source(registry_htpasswd: RegistryServer) -> SourceSet:
    return _seed(registry_htpasswd, f"zoo-{_RUN}/src")


def _skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([SKOPEO, *args], capture_output=True, timeout=120, check=False)


def _creds(server: RegistryServer) -> list[str]:
    return [f"{server.username}:{server.password}"] if server.username else []


def read_back(host: str, server: RegistryServer, repo: str, want: tuple[bytes, str], tmp: Path):
    """skopeo sees the source's exact manifest bytes and can copy the whole image."""
    creds = _creds(server)
    ref = f"docker://{host}/{repo}:v1"
    inspect = _skopeo("inspect", "--raw", "--tls-verify=false", *_flag("--creds", creds), ref)
    assert inspect.returncode == 0, inspect.stderr.decode()
    assert inspect.stdout == want[0], f"{repo}: skopeo read other manifest bytes"
    # An OCI layout holds OCI manifests only: a Docker one (converting would change its
    # digest) is copied to a `dir:` layout, which keeps the exact bytes.
    oci = json.loads(want[0]).get("mediaType", "").startswith("application/vnd.oci.")
    layout = tmp / f"copy-{repo.replace('/', '-')}"
    destination = f"oci:{layout}:v1" if oci else f"dir:{layout}"
    copy = _skopeo(
        "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
        *_flag("--src-creds", creds), ref, destination,
    )  # fmt: skip
    assert copy.returncode == 0, copy.stderr.decode()
    if oci:
        index = json.loads((layout / "index.json").read_text())
        assert [m["digest"] for m in index["manifests"]] == [want[1]], repo
    else:
        assert (layout / "manifest.json").read_bytes() == want[0], repo
    shutil.rmtree(layout)


def _flag(name: str, values: list[str]) -> list[str]:
    return [name, values[0]] if values else []


def _report(
    record_property: Callable[[str, object], None], label: str, proxy: FaultProxy, run: Any
) -> ProxyStats:
    stats = proxy.snapshot()
    fallbacks = dict(sorted(stats.faults.items()))
    record_property(f"{label}-requests", stats.by_kind())
    record_property(f"{label}-fallbacks", json.dumps(fallbacks))
    print(f"zoo {label}: requests {stats.by_kind()}; quirks/fallbacks {fallbacks}; exit {run.code}")
    return stats


# -- destinations -----------------------------------------------------------------------------

DESTINATIONS = ["dockerhub", "ghcr", "chunked-only", "acr", "ecr", "quay", "harbor", "gar"]
#: Auth-file `chunk_size`: GHCR and ECR upload in chunks, so their PATCH quirks meet us.
_CHUNK = {"ghcr": 8 * MiB, "ecr": 8 * MiB}


def _destination_proxy(name: str, server: RegistryServer, prefix: str) -> FaultProxy:
    options: dict[str, Any] = {}
    if name == "ecr":
        options["repositories"] = [f"{prefix}/{n}" for n in ("index", "list", "big", "list-copy")]
    if name == "harbor":
        options["projects"] = ["library"]  # our prefix's project is not one: mounts get 401
    if name == "acr":  # one cut upload: the session is gone (BLOB_UPLOAD_INVALID), start anew
        options["rules"] = [FaultRule(kinds=("cut-upload",), methods=frozenset({"PATCH"}), limit=1)]
    return profile(name).proxy(server.host, **options)


@pytest.mark.parametrize("name", DESTINATIONS)
def test_profile_as_destination(
    name: str,
    cli: CliRunner,
    plain_source: SourceSet,
    registry_plain: RegistryServer,
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    server = upstream_for(name, request)
    prefix = f"zoo-{_RUN}/to-{name}"
    src = f"{registry_plain.host}/{plain_source.prefix}"
    with _destination_proxy(name, server, prefix) as proxy:
        dst = f"{proxy.host}/{prefix}"
        images: dict[str, Any] = {f"{src}/{n}:v1": f"{dst}/{n}" for n in plain_source.manifests}
        images[f"{src}/list:v1"] = [f"{dst}/list", f"{dst}/list-copy"]  # blobs to mount
        if name == "ecr":
            images[f"{src}/index:v1"] = [f"{dst}/index", f"{dst}/not-created"]
        entry = {**auth_entry(server), **({"chunk_size": _CHUNK[name]} if name in _CHUNK else {})}
        auth = {registry_plain.host: {"insecure": True}, proxy.host: entry}
        run = mirror(cli, images, auth)
        stats = _report(record_property, f"to-{name}", proxy, run)
        if name == "ecr":
            assert run.code == 1, run.describe()
            failed = run.failed()
            assert list(failed) == [f"{proxy.host}/{prefix}/not-created:v1"], failed
            assert "create" in next(iter(failed.values())).lower(), failed
        else:
            assert run.code == 0, run.describe()
        proxy.clear_faults()
        wanted = {**plain_source.manifests, "list-copy": plain_source.manifests["list"]}
        for repo, want in wanted.items():
            read_back(proxy.host, server, f"{prefix}/{repo}", want, tmp_path)
        _assert_destination_quirk(name, proxy, stats)


def _accepted_patches(proxy: FaultProxy) -> list[int]:
    return [r.bytes_up for r in proxy.requests() if r.method == "PATCH" and r.status in (201, 202)]


def _assert_destination_quirk(name: str, proxy: FaultProxy, stats: ProxyStats) -> None:
    faults = stats.faults
    mounts = [r for r in proxy.requests() if r.method == "POST" and "mount=" in r.target]
    if name in ("dockerhub", "gar"):
        assert faults["mount-refused"] >= 1, faults  # a plain session (202) each time
        assert {r.status for r in mounts} <= {202, 401}, [(r.target, r.status) for r in mounts]
    if name == "ghcr":
        assert faults["patch-limit"] >= 1, faults  # 8 MiB refused, then 4 MiB chunks
        assert max(_accepted_patches(proxy)) <= 4 * MiB
    if name == "chunked-only":
        assert faults["monolithic-limit"] >= 1 and faults["patch-limit"] >= 1, faults
        assert 0 < max(_accepted_patches(proxy)) <= 3 * MiB
    if name == "acr":
        assert faults["monolithic-limit"] >= 1 and faults["cut-upload"] == 1, faults
    if name == "ecr":
        assert faults["name-unknown"] >= 1, faults
        assert len(_accepted_patches(proxy)) >= 2  # the stale Range was met past the first chunk
        assert all(r.status == 201 for r in proxy.requests() if r.method == "PATCH" and r.status)
    if name == "quay":
        assert faults["429"] >= 1 and faults["mount-without-from"] == 0, faults
        assert any(r.status == 201 for r in mounts), [(r.target, r.status) for r in mounts]
    if name == "harbor":
        assert faults["mount-no-project"] >= 1, faults
    if name == "gar":
        assert faults["patch-refused"] == 0 and not _accepted_patches(proxy)


# -- sources ------------------------------------------------------------------------------------


@pytest.fixture
def source_for(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[str], tuple[RegistryServer, SourceSet]]]:
    def pick(name: str) -> tuple[RegistryServer, SourceSet]:
        fixture = "basic_source" if name == "ecr" else "token_source"
        return upstream_for(name, request), request.getfixturevalue(fixture)

    yield pick


@pytest.mark.parametrize("name", ["dockerhub", "harbor", "ecr"])
def test_profile_as_source(
    name: str,
    cli: CliRunner,
    source_for: Callable[[str], tuple[RegistryServer, SourceSet]],
    registry_plain2: RegistryServer,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    server, source = source_for(name)
    prefix = f"zoo-{_RUN}/from-{name}"
    with profile(name).proxy(server.host) as proxy:
        src = f"{proxy.host}/{source.prefix}"
        images = {f"{src}/{n}:v1": f"{registry_plain2.host}/{prefix}/{n}" for n in ("index", "big")}
        images[f"{src}/list"] = f"{registry_plain2.host}/{prefix}/list"  # every tag: a tag list
        auth = {proxy.host: auth_entry(server), registry_plain2.host: {"insecure": True}}
        run = mirror(cli, images, auth)
        stats = _report(record_property, f"from-{name}", proxy, run)
        assert run.code == 0, run.describe()
        for repo, want in source.manifests.items():
            read_back(registry_plain2.host, registry_plain2, f"{prefix}/{repo}", want, tmp_path)
        storage = proxy.quirks.storage
        assert (storage is not None) == (name in ("dockerhub", "harbor")), name
        if storage is not None:  # dockerhub, harbor: every blob byte came from storage
            assert stats.faults["storage-redirect"] >= 3, stats.faults
            assert storage.served_bytes() >= BIG
            assert storage.authorized() == [], "Authorization reached the storage origin"
        if name == "ecr":
            assert {r.authorization for r in proxy.requests()} <= {"basic", None}
            assert stats.faults["tag-page-too-large"] == 0 and stats.requests[("GET", "tags")] >= 1
