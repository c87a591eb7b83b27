"""Upload negotiation against registries with body limits, emulated by the fault proxy.

Monolithic first; a refused monolithic `PUT` (ACR-like 413 over 20 MB, a
chunked-only registry) falls back to `PATCH` chunks; a refused `PATCH`
(GHCR-like 416 over 4 MiB) halves the chunk; the auth file's `chunk_size`
and the registry's `OCI-Chunk-Min-Length` are honoured; and what worked is
remembered, so the next blob to the same registry pays no probe.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest

from syncer_core.registry import RegistryAccess, RegistryClient
from syncer_core.registry.negotiation import FALLBACK_CHUNK
from tests.reliability.conftest import ProxyFactory
from tests.reliability.helpers import MiB
from tests.support.registry_server import RegistryServer
from tests.support.stream_copy_probe import pattern_chunks
from tests.support.zoo import FaultProxy, FaultRule, profile

pytestmark = pytest.mark.registry

BLOB = 24 * MiB + 12345  # over ACR's 20 MB, several chunks of any size tried here


def seed(server: RegistryServer, repository: str, seed: int) -> str:
    hasher = hashlib.sha256()
    for piece in pattern_chunks(BLOB, seed=seed):
        hasher.update(piece)
    digest = f"sha256:{hasher.hexdigest()}"
    with RegistryClient(server.host, access=RegistryAccess(insecure=True)) as client:
        client.push_blob(repository, digest, pattern_chunks(BLOB, seed=seed), size=BLOB)
    return digest


@pytest.fixture(scope="module")
def blobs(registry_plain: RegistryServer) -> tuple[str, list[str]]:
    """Two blobs in a source repository: `(repository, [digest, digest])`."""
    repository = "negotiation/source"
    return repository, [seed(registry_plain, repository, n) for n in (31, 32)]


def copy_both(
    registry_plain: RegistryServer,
    proxy: FaultProxy,
    blobs: tuple[str, list[str]],
    access: RegistryAccess | None = None,
) -> tuple[RegistryClient, str]:
    """Copy both blobs through the engine's pipeline with one destination client."""
    source_repository, digests = blobs
    target_repository = f"negotiation/{uuid.uuid4().hex[:10]}"
    source = RegistryClient(registry_plain.host, access=RegistryAccess(insecure=True))
    target = RegistryClient(proxy.host, access=access or RegistryAccess(insecure=True))
    with source:
        for digest in digests:
            with source.open_blob(source_repository, digest) as stream:
                target.push_blob(
                    target_repository,
                    digest,
                    stream.iter_chunks(),
                    size=stream.size,
                    rewind=stream.rewind,
                )
            assert target.head_blob(target_repository, digest) == BLOB
    return target, target_repository


def bodies(proxy: FaultProxy, method: str) -> list[int]:
    """Body sizes of the upload requests with `method` that the proxy answered 2xx."""
    return [
        r.bytes_up
        for r in proxy.requests()
        if (r.method, r.kind) == (method, "upload") and r.status and r.status < 300
    ]


def test_a_registry_refusing_large_monolithic_uploads_gets_chunks_and_is_remembered(
    proxies: ProxyFactory, registry_plain: RegistryServer, registry_plain2, blobs
) -> None:
    proxy = proxies(registry_plain2, monolithic_limit=20_000_000)  # ACR, Harbor #23015
    target, _ = copy_both(registry_plain, proxy, blobs)
    stats = proxy.snapshot()
    assert stats.faults["monolithic-limit"] == 1, stats.summary()  # the second blob: no probe
    assert max(bodies(proxy, "PATCH")) == FALLBACK_CHUNK
    assert sum(bodies(proxy, "PATCH")) == 2 * BLOB
    assert target.upload_plan.chunk_size == FALLBACK_CHUNK
    assert target.upload_plan.fallbacks == [f"413: chunks of {FALLBACK_CHUNK} bytes"]


def test_a_chunked_only_registry_with_a_4mib_patch_cap_is_negotiated_down(
    proxies: ProxyFactory, registry_plain: RegistryServer, registry_plain2, blobs
) -> None:
    """GHCR-like: no monolithic body at all, and a PATCH over 4 MiB answered 416."""
    proxy = proxies(registry_plain2, monolithic_limit=0, patch_limit=4 * MiB)
    target, _ = copy_both(registry_plain, proxy, blobs)
    stats = proxy.snapshot()
    assert stats.faults["monolithic-limit"] == 1, stats.summary()
    assert stats.faults["patch-limit"] == 1, stats.summary()
    assert max(bodies(proxy, "PATCH")) == 4 * MiB
    assert target.upload_plan.chunk_size == 4 * MiB


def test_the_auth_file_chunk_size_skips_the_probe_and_honours_the_min_length(
    proxies: ProxyFactory, registry_plain: RegistryServer, registry_plain2, blobs
) -> None:
    proxy = proxies(registry_plain2, monolithic_limit=0)
    proxy.add_response_headers(
        FaultRule(methods=frozenset({"POST"}), endpoints=frozenset({"upload"})),
        {"OCI-Chunk-Min-Length": str(3 * MiB)},
    )
    access = RegistryAccess(insecure=True, chunk_size=2 * MiB)
    copy_both(registry_plain, proxy, blobs, access)
    stats = proxy.snapshot()
    assert stats.total_faults == 0, stats.summary()  # chunked from the first blob on
    assert max(bodies(proxy, "PATCH")) == 3 * MiB  # raised to the registry's minimum


def test_ecr_stale_patch_range_does_not_stop_a_chunked_upload(
    registry_plain: RegistryServer, blobs: tuple[str, list[str]]
) -> None:
    """ECR stores every chunk but keeps answering the first chunk's `Range` (201 each time).

    aws/containers-roadmap #2831: a client that trusts that header sees every
    PATCH after the first as lost; the session's own status (`GET`) says the
    bytes arrived. Before the fix this upload failed with "the registry
    confirmed 8388608 of the ... bytes sent".
    """
    name = f"negotiation/{uuid.uuid4().hex[:10]}"
    proxy = profile("ecr").proxy(registry_plain.host, repositories=[name])
    with proxy, RegistryClient(registry_plain.host, access=RegistryAccess(insecure=True)) as src:
        target = RegistryClient(
            proxy.host, access=RegistryAccess(insecure=True, chunk_size=8 * MiB)
        )
        with target:
            repository, digests = blobs
            with src.open_blob(repository, digests[0]) as stream:
                target.push_blob(
                    name, digests[0], stream.iter_chunks(), size=stream.size, rewind=stream.rewind
                )
            assert target.head_blob(name, digests[0]) == BLOB
    patches = [r for r in proxy.requests() if r.method == "PATCH"]
    assert [r.status for r in patches] == [201, 201, 201, 201]
    assert sum(r.bytes_up for r in patches) == BLOB  # nothing sent twice
