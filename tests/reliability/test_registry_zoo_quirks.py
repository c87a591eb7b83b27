"""Zoo quirks the matrix does not meet: tag pages, ECR's `n` bound, Harbor schema1, no catalog.

Each test makes image-syncer (the CLI, or `RegistryClient` where listing is
the unit) run into one quirk of a named profile (`tests/support/zoo/
profiles.py`) and asserts what a user needs from it, plus that the quirk was
really met (its counter moved, or the request that would trigger it never
went out).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from syncer_core.registry import RegistryClient
from tests.reliability.conftest import CliRunner
from tests.reliability.helpers import client_for, tag_digests
from tests.reliability.zoo_runs import mirror, upstream_for
from tests.support.images import TestImage, build_image, push_image
from tests.support.registry_server import RegistryServer, access_for, auth_entry
from tests.support.sync_helpers import seed_signed_schema1
from tests.support.zoo import FaultProxy, profile

pytestmark = [pytest.mark.flow, pytest.mark.registry]

_RUN = uuid.uuid4().hex[:8]
Fresh = Callable[..., RegistryServer]


def _many_tags(server: RegistryServer, repository: str, image: TestImage, tags: list[str]) -> None:
    """Push `image` once, then PUT its manifest under every tag (the cheap way to get many)."""
    with client_for(server) as client:
        push_image(client, repository, tags[0], image)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda tag: client.put_manifest(repository, tag, image.top), tags[1:]))


def _tag_requests(proxy: FaultProxy) -> list[str]:
    return [r.target for r in proxy.requests() if r.method == "GET" and r.kind == "tags"]


def _page_size(target: str) -> int | None:
    query = target.partition("?")[2]
    found = [p[2:] for p in query.split("&") if p.startswith("n=")]
    return int(found[0]) if found and found[0].isdigit() else None


def test_dockerhub_source_with_150_tags_is_mirrored_whole_across_tag_pages(
    cli: CliRunner, request: pytest.FixtureRequest, registry_plain2: RegistryServer
) -> None:
    server = upstream_for("dockerhub", request)
    repository = f"quirks-{_RUN}/paged"
    tags = [f"t{i:03d}" for i in range(150)]
    image = build_image(951, layer_sizes=(512,))
    _many_tags(server, repository, image, tags)
    with profile("dockerhub").proxy(server.host) as proxy:
        images = {f"{proxy.host}/{repository}": f"{registry_plain2.host}/{repository}"}
        auth = {proxy.host: auth_entry(server), registry_plain2.host: {"insecure": True}}
        run = mirror(cli, images, auth)
        assert run.code == 0, run.describe()
        assert len(_tag_requests(proxy)) >= 2, _tag_requests(proxy)  # 100 a page: two pages
        assert proxy.snapshot().faults["tag-page"] >= 1
    mirrored = tag_digests(registry_plain2, repository)
    assert sorted(mirrored) == tags
    assert set(mirrored.values()) == {image.digest}


def test_ecr_tag_list_never_asks_for_more_than_1000_and_lists_every_tag(
    registry_plain: RegistryServer,
) -> None:
    # The bound is on the tag list alone: a plain registry behind the profile spares
    # 1,001 bcrypt checks of ECR's Basic auth while seeding (that auth is the matrix's).
    repository = f"quirks-{_RUN}/many"
    tags = [f"r{i:04d}" for i in range(1001)]  # one past the bound
    _many_tags(registry_plain, repository, build_image(952, layer_sizes=(256,)), tags)
    with profile("ecr").proxy(registry_plain.host) as proxy:
        with RegistryClient(proxy.host, access=access_for(registry_plain)) as client:
            listed = client.list_tags(repository)
        sent = _tag_requests(proxy)
        # The quirk is live: asking for a larger page is refused as ECR refuses it.
        refused = httpx.get(f"http://{proxy.host}/v2/{repository}/tags/list?n=1001")
    assert listed == tags
    assert sent and all((_page_size(t) or 0) <= 1000 for t in sent), sent
    assert proxy.snapshot().faults["tag-page-too-large"] == 1  # only our own probe
    assert refused.status_code == 400, refused.text


def test_schema1_source_to_harbor_fails_that_image_naming_schema1_and_the_others_sync(
    cli: CliRunner, fresh_registry: Fresh
) -> None:
    source = fresh_registry("plain", schema1=True)
    behind = fresh_registry("token", schema1=True)  # accepts schema1: the refusal is Harbor's
    seed_signed_schema1(source, "legacy/app", "v1")
    modern = build_image(953, layer_sizes=(700,))
    with client_for(source) as client:
        push_image(client, "modern/app", "v1", modern)
    with profile("harbor").proxy(behind.host) as proxy:
        dst = f"{proxy.host}/quirks-{_RUN}"
        images = {
            f"{source.host}/legacy/app:v1": f"{dst}/legacy",
            f"{source.host}/modern/app:v1": f"{dst}/modern",
        }
        auth = {source.host: {"insecure": True}, proxy.host: auth_entry(behind)}
        run = mirror(cli, images, auth)
        faults = proxy.snapshot().faults
    assert run.code == 1, run.describe()
    failed = run.failed()
    assert list(failed) == [f"{dst}/legacy:v1"], run.statuses()
    assert "schema1" in failed[f"{dst}/legacy:v1"], failed
    assert run.statuses()[f"{dst}/modern:v1"] == "synced", run.statuses()
    assert faults["schema1-rejected"] == 1, faults  # refused once, not retried
    assert tag_digests(behind, f"quirks-{_RUN}/modern") == {"v1": modern.digest}
    assert tag_digests(behind, f"quirks-{_RUN}/legacy") == {}


def _rule_forms(src: str, dst: str, digest: str) -> dict[str, Any]:
    """Every source form of the images file (spec §3.2), each to its own destination."""
    return {
        f"{src}:v1": f"{dst}/one",
        f"{src}": f"{dst}/every",
        f"{src}:v1,v2": f"{dst}/listed",
        f"{src}@{digest}": f"{dst}/pinned:v1",
        f"{src}:/^v[23]$/": [f"{dst}/matched", f"{dst}/matched-copy"],
    }


def test_dockerhub_needs_no_catalog_for_any_rule_form(
    cli: CliRunner, request: pytest.FixtureRequest
) -> None:
    server = upstream_for("dockerhub", request)
    repository = f"quirks-{_RUN}/forms"
    image = build_image(954, layer_sizes=(600,))
    _many_tags(server, repository, image, ["v1", "v2", "v3"])
    with profile("dockerhub").proxy(server.host) as proxy:
        src, dst = f"{proxy.host}/{repository}", f"{proxy.host}/quirks-{_RUN}/to"
        run = mirror(cli, _rule_forms(src, dst, image.digest), {proxy.host: auth_entry(server)})
        catalog = [(r.target, r.status) for r in proxy.requests() if r.kind == "catalog"]
    assert run.code == 0, run.describe()
    assert catalog == [], catalog  # Docker Hub has no catalog: nothing may need one
    wanted = {
        "one": ["v1"],
        "every": ["v1", "v2", "v3"],
        "listed": ["v1", "v2"],
        "pinned": ["v1"],
        "matched": ["v2", "v3"],
        "matched-copy": ["v2", "v3"],
    }
    for name, tags in wanted.items():
        found = tag_digests(server, f"quirks-{_RUN}/to/{name}")
        assert found == dict.fromkeys(tags, image.digest), name


def test_dockerhub_answers_a_catalog_request_as_docker_hub_does(
    request: pytest.FixtureRequest,
) -> None:
    """401 with a challenge for `registry:catalog:*`, then `insufficient_scope` with its token."""
    server = upstream_for("dockerhub", request)
    with profile("dockerhub").proxy(server.host) as proxy, httpx.Client() as http:
        url = f"http://{proxy.host}/v2/_catalog"
        anonymous = http.get(url)
        challenge = anonymous.headers["www-authenticate"]
        params = dict(part.split("=", 1) for part in challenge[7:].split(","))
        realm = params.pop("realm").strip('"')
        query = {k: v.strip('"') for k, v in params.items()}
        credentials = (server.username or "", server.password or "")
        token = http.get(realm, params=query, auth=credentials)
        assert token.status_code == 200, token.text  # the token service grants the scope...
        bearer = {"Authorization": f"Bearer {token.json()['token']}"}
        with_token = http.get(url, headers=bearer)
        faults = proxy.snapshot().faults
    assert anonymous.status_code == 401, anonymous.text
    assert 'scope="registry:catalog:*"' in challenge, challenge
    assert with_token.status_code == 401, with_token.text  # ...the registry still refuses it
    assert 'error="insufficient_scope"' in with_token.headers["www-authenticate"]
    (error,) = with_token.json()["errors"]
    assert error["code"] == "UNAUTHORIZED" and error["detail"][0]["Name"] == "catalog"
    assert faults["no-catalog"] == 2
