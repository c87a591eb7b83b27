"""`HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` are honoured, through a real tinyproxy.

A sync between two real registries with the proxy variables set goes
through the forward proxy: its log shows the plain-HTTP requests (absolute
`GET http://...`, the upload `PUT`s) and the `CONNECT` of the HTTPS probe an
insecure registry gets first. With `NO_PROXY` covering the registries, the
same sync succeeds and the proxy sees nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from syncer_core.plan import SyncJob
from syncer_core.reference import Reference
from syncer_core.sync.engine import run_jobs
from syncer_core.sync.results import ImageStatus
from syncer_core.sync.session import SyncSession
from tests.integration.helpers import unique
from tests.support.forward_proxy import ForwardProxy, running_forward_proxy
from tests.support.images import build_image, push_image
from tests.support.registry_server import RegistryServer, access_for
from tests.support.sync_helpers import registry_client, tag_digests

pytestmark = [pytest.mark.registry]


def sync_one(source: RegistryServer, target: RegistryServer) -> tuple[str, str]:
    """Push an image to `source`, sync it to `target` with the engine; `(repository, digest)`."""
    repository = unique("proxied/app")
    image = build_image(500, layer_sizes=(2000,))
    with registry_client(source) as client:
        push_image(client, repository, "v1", image)
    accesses = {source.host: access_for(source), target.host: access_for(target)}
    session = SyncSession(lambda reference: accesses[reference.registry])
    job = SyncJob(
        source=Reference.parse(f"{source.host}/{repository}:v1"),
        target=Reference.parse(f"{target.host}/{repository}:v1"),
        rule=repository,
    )
    try:
        [result] = run_jobs(session, [job])
    finally:
        session.close()
    assert result.status is ImageStatus.SYNCED, result.reason
    assert tag_digests(target, repository) == {"v1": image.digest}
    return repository, image.digest


@pytest.fixture
def forward_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    """A running tinyproxy that `HTTP_PROXY` and `HTTPS_PROXY` point at."""
    with running_forward_proxy(tmp_path / "tinyproxy") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        yield proxy


def test_a_sync_goes_through_the_proxy_of_the_environment(
    registry_plain: RegistryServer, registry_plain2: RegistryServer, forward_proxy: ForwardProxy
) -> None:
    repository, _ = sync_one(registry_plain, registry_plain2)
    seen = forward_proxy.requests()
    source, target = registry_plain.host, registry_plain2.host
    assert f"GET http://{source}/v2/{repository}/manifests/v1" in seen, seen
    assert any(line.startswith(f"PUT http://{target}/v2/{repository}/") for line in seen), seen
    assert f"CONNECT {source}" in seen, seen  # the HTTPS probe of an insecure registry


def test_no_proxy_covering_the_registries_bypasses_the_proxy(
    registry_plain: RegistryServer,
    registry_plain2: RegistryServer,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    sync_one(registry_plain, registry_plain2)
    # A witness through the proxy on purpose: an empty list then means the sync
    # sent nothing, not that the proxy's log went unread.
    witness = f"http://{registry_plain.host}/v2/"
    httpx.get(witness, proxy=forward_proxy.url, trust_env=False, timeout=10)
    assert forward_proxy.requests() == [f"GET {witness}"]
