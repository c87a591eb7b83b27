"""The fault proxy itself, and what our registry client makes of each fault it injects.

These run at the client level (`RegistryClient` through the proxy), where
timeouts can be made short: `ClientOptions.read_timeout` is 300 s by default
and the CLI has no flag for it, so the `delay` fault is tested here.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator

import httpx
import pytest

from syncer_core.errors import (
    RateLimitedError,
    RegistryError,
    TransientRegistryError,
)
from syncer_core.registry import ClientOptions, RegistryClient, RetryPolicy
from tests.reliability.conftest import ProxyFactory
from tests.reliability.helpers import MiB, client_for
from tests.support.images import TestImage, build_image, push_image
from tests.support.registry_server import RegistryServer, access_for
from tests.support.stream_copy_probe import pattern_chunks
from tests.support.zoo import FaultProxy, FaultRule

pytestmark = pytest.mark.registry

ONCE = RetryPolicy(attempts=1)
FAST = RetryPolicy(attempts=4, base_delay=0.05, jitter=0.0)


def _repo(prefix: str = "proxy") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


@pytest.fixture
def seeded(registry_token: RegistryServer) -> tuple[str, TestImage]:
    """An image in the token registry, pushed directly."""
    repository, image = _repo(), build_image(5000, layer_sizes=(40_000,))
    with client_for(registry_token) as client:
        push_image(client, repository, "v1", image)
    return repository, image


@pytest.fixture
def token_proxy(registry_token: RegistryServer, proxies: ProxyFactory) -> FaultProxy:
    """A proxy in front of the token registry that also carries the token requests."""
    return proxies(registry_token, seed=1, rewrite_realm=True)


def _client(proxy: FaultProxy, server: RegistryServer, **kwargs) -> RegistryClient:
    return RegistryClient(proxy.host, access=access_for(server), **kwargs)


@pytest.fixture
def client(token_proxy: FaultProxy, registry_token: RegistryServer) -> Iterator[RegistryClient]:
    """A client that sees every fault (no request retries)."""
    with _client(token_proxy, registry_token, retry=ONCE) as c:
        yield c


def _read_blob(client: RegistryClient, repository: str, digest: str) -> bytes:
    with client.open_blob(repository, digest) as blob:
        return b"".join(blob.iter_chunks())


def _layer(image: TestImage) -> str:
    return max(image.blobs, key=lambda d: len(image.blobs[d]))


# -- each kind, as the client sees it -------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient_with_its_status(
    client: RegistryClient, token_proxy: FaultProxy, seeded, status: int
) -> None:
    repository, _ = seeded
    token_proxy.set_faults(FaultRule(kinds=(str(status),), endpoints=frozenset({"manifest"})))
    with pytest.raises(TransientRegistryError) as caught:
        client.head_manifest(repository, "v1")
    assert caught.value.status_code == status
    assert token_proxy.snapshot().faults == {str(status): 1}


@pytest.mark.parametrize(("kind", "retry_after"), [("429", None), ("429-retry-after", 3.0)])
def test_429_is_rate_limited_with_or_without_retry_after(
    client: RegistryClient, token_proxy: FaultProxy, seeded, kind: str, retry_after
) -> None:
    repository, _ = seeded
    token_proxy.set_faults(FaultRule(kinds=(kind,), retry_after="3"))
    with pytest.raises(RateLimitedError) as caught:
        client.list_tags(repository)
    assert caught.value.retry_after == retry_after


def test_reset_before_headers_is_transient_without_status(
    client: RegistryClient, token_proxy: FaultProxy, seeded
) -> None:
    repository, _ = seeded
    token_proxy.set_faults(FaultRule(kinds=("reset",), endpoints=frozenset({"manifest"})))
    with pytest.raises(TransientRegistryError) as caught:
        client.head_manifest(repository, "v1")
    assert caught.value.status_code is None
    assert "unreachable" in str(caught.value)


def test_cut_blob_body_is_resumed_by_the_stream(
    client: RegistryClient, token_proxy: FaultProxy, seeded
) -> None:
    """One cut: the stream asks again (from its last whole chunk) and delivers the exact blob."""
    repository, image = seeded
    layer = _layer(image)
    token_proxy.set_faults(FaultRule(kinds=("cut",), endpoints=frozenset({"blob"}), limit=1))
    client.head_blob(repository, layer)  # a HEAD has no body to cut; it primes the token
    with client.open_blob(repository, layer) as blob:
        assert blob.size == len(image.blobs[layer])  # the headers came through
        assert b"".join(blob.iter_chunks()) == image.blobs[layer]
        assert blob.resumes == 1
    gets = [r for r in token_proxy.requests() if (r.method, r.kind) == ("GET", "blob")]
    assert [r.fault for r in gets] == ["cut", None]
    assert 0 < gets[0].bytes_down < len(image.blobs[layer])


def test_cut_blob_body_fails_the_stream_not_the_open(
    client: RegistryClient, token_proxy: FaultProxy, seeded
) -> None:
    """Every answer cut before a whole chunk arrives: a bounded number of resumes, then a
    transient error from the stream (the copy is retried as a whole above)."""
    repository, image = seeded
    layer = _layer(image)
    token_proxy.set_faults(FaultRule(kinds=("cut",), endpoints=frozenset({"blob"})))
    client.head_blob(repository, layer)
    with client.open_blob(repository, layer) as blob:
        assert blob.size == len(image.blobs[layer])
        with pytest.raises(TransientRegistryError, match="RemoteProtocolError"):
            b"".join(blob.iter_chunks())
    cuts = [r for r in token_proxy.requests() if r.fault == "cut"]
    assert len(cuts) == 4  # the first answer and three resumes that brought no new chunk
    assert all(0 < cut.bytes_down < len(image.blobs[layer]) for cut in cuts)


def test_cut_manifest_body_is_retried_by_the_client(
    registry_token: RegistryServer, token_proxy: FaultProxy, seeded
) -> None:
    # Engine bug found by the convergence run and fixed: the manifest body was
    # read outside the retried operation, so a truncated body failed the image.
    repository, image = seeded
    token_proxy.set_faults(
        FaultRule(
            kinds=("cut",), endpoints=frozenset({"manifest"}), methods=frozenset({"GET"}), limit=1
        )
    )
    with _client(token_proxy, registry_token, retry=FAST) as client:
        assert client.get_manifest(repository, "v1").digest == image.digest
    gets = [r for r in token_proxy.requests() if r.method == "GET" and r.kind == "manifest"]
    # 401 (nothing to cut), 200 cut mid-body, then the retry.
    assert [(r.status, r.fault) for r in gets] == [(401, None), (200, "cut"), (200, None)]


def test_delay_beyond_the_read_timeout_is_a_timeout_then_retried(
    registry_token: RegistryServer, token_proxy: FaultProxy, seeded
) -> None:
    repository, image = seeded
    options = ClientOptions(read_timeout=0.5)
    delay = FaultRule(kinds=("delay",), delay=3.0, endpoints=frozenset({"manifest"}), limit=1)
    token_proxy.set_faults(delay)
    with _client(token_proxy, registry_token, options=options, retry=ONCE) as client:
        started = time.monotonic()
        with pytest.raises(TransientRegistryError, match="ReadTimeout"):
            client.head_manifest(repository, "v1")
        assert time.monotonic() - started < 2.0
    token_proxy.set_faults(delay)
    with _client(token_proxy, registry_token, options=options, retry=FAST) as client:
        started = time.monotonic()
        head = client.head_manifest(repository, "v1")
        assert head is not None and head.digest == image.digest
        assert time.monotonic() - started < 2.0
    assert token_proxy.snapshot().faults == {"delay": 2}


def test_token_endpoint_failure_is_transient_and_retried(
    registry_token: RegistryServer, token_proxy: FaultProxy, seeded
) -> None:
    repository, image = seeded
    token_proxy.set_faults(FaultRule(kinds=("token-fail",), limit=2))
    with _client(token_proxy, registry_token, retry=FAST) as client:
        head = client.head_manifest(repository, "v1")
    assert head is not None and head.digest == image.digest
    stats = token_proxy.snapshot()
    assert stats.faults == {"token-fail": 2}
    assert stats.requests[("GET", "token")] == 3


def test_token_endpoint_failure_without_retries_names_the_token_service(
    client: RegistryClient, token_proxy: FaultProxy, seeded
) -> None:
    repository, _ = seeded
    token_proxy.set_faults(FaultRule(kinds=("token-fail",)))
    with pytest.raises(TransientRegistryError, match="token request") as caught:
        client.head_manifest(repository, "v1")
    assert caught.value.status_code == 503


def test_revoked_token_forces_reauthentication_transparently(
    client: RegistryClient, token_proxy: FaultProxy, registry_token: RegistryServer, seeded
) -> None:
    repository, image = seeded
    tokens = registry_token.token_server
    assert tokens is not None
    assert client.head_manifest(repository, "v1") is not None  # a token is cached now
    tokens_before = len(tokens.requests)
    token_proxy.set_faults(FaultRule(kinds=("invalidate-token",), limit=1))

    assert _read_blob(client, repository, _layer(image)) == image.blobs[_layer(image)]

    assert token_proxy.snapshot().faults == {"invalidate-token": 1}
    assert len(tokens.requests) == tokens_before + 1
    revoked, token, retried = token_proxy.requests()[-3:]
    assert (revoked.status, revoked.fault, revoked.authorization) == (
        401,
        "invalidate-token",
        "bearer",
    )
    assert (token.kind, token.status, retried.status) == ("token", 200, 200)


def test_a_revoked_token_stays_revoked_and_a_fresh_one_is_never_revoked(
    token_proxy: FaultProxy, registry_token: RegistryServer, seeded
) -> None:
    repository, _ = seeded
    url = f"http://{token_proxy.host}/v2/{repository}/manifests/v1"
    assert registry_token.username and registry_token.password
    credentials = (registry_token.username, registry_token.password)
    with httpx.Client(timeout=5, headers={"Accept": "*/*"}) as raw:
        challenge = raw.head(url).headers["www-authenticate"]
        realm = challenge.split('realm="', 1)[1].split('"', 1)[0]
        params = {"service": "image-syncer-test-registry", "scope": f"repository:{repository}:pull"}

        def token() -> dict[str, str]:
            value = raw.get(realm, params=params, auth=credentials).json()["token"]
            return {"Authorization": f"Bearer {value}"}

        old, fresh = token(), token()
        token_proxy.set_faults(FaultRule(kinds=("invalidate-token",)))
        first = raw.head(url, headers=old)  # first use: never revoked
        second = raw.head(url, headers=old)  # used before: revoked
        token_proxy.clear_faults()
        third = raw.head(url, headers=old)  # and stays revoked
        other = raw.head(url, headers=fresh)
    assert [first.status_code, second.status_code, third.status_code, other.status_code] == [
        200,
        401,
        401,
        200,
    ]
    assert 'error="invalid_token"' in second.headers["www-authenticate"]
    assert f'scope="repository:{repository}:pull"' in second.headers["www-authenticate"]


def test_streamed_upload_with_a_revoked_token_is_transient(
    client: RegistryClient, token_proxy: FaultProxy
) -> None:
    repository = _repo()
    client.push_blob_bytes(repository, b"prime the push token")
    token_proxy.set_faults(
        FaultRule(kinds=("invalidate-token",), methods=frozenset({"PUT"}), limit=1)
    )
    data = b"x" * 100_000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(TransientRegistryError, match="authorization expired") as caught:
        client.push_blob(repository, digest, iter([data]), size=len(data))
    assert caught.value.status_code == 401
    # The next attempt of the copy re-authenticates at the upload start and succeeds.
    client.push_blob(repository, digest, iter([data]), size=len(data))
    assert client.head_blob(repository, digest) == len(data)


# -- targeting, determinism, counters, streaming, lifecycle ---------------------------------------


def test_rules_target_a_repository_or_a_path(
    client: RegistryClient, token_proxy: FaultProxy, registry_token: RegistryServer
) -> None:
    hit, spared = _repo("hit"), _repo("spared")
    image = build_image(5001, layer_sizes=(100,))
    with client_for(registry_token) as direct:
        for repository in (hit, spared):
            push_image(direct, repository, "v1", image)
    token_proxy.set_faults(FaultRule(kinds=("503",), repository="hit/.*"))
    assert client.head_manifest(spared, "v1") is not None
    with pytest.raises(TransientRegistryError):
        client.head_manifest(hit, "v1")
    token_proxy.set_faults(FaultRule(kinds=("502",), path=r"/tags/list$"))
    assert client.head_manifest(hit, "v1") is not None
    with pytest.raises(TransientRegistryError):
        client.list_tags(spared)
    assert token_proxy.snapshot().faults == {"503": 1, "502": 1}


def test_same_seed_same_decisions(registry_plain: RegistryServer, proxies: ProxyFactory) -> None:
    repository, image = _repo(), build_image(5002, layer_sizes=(100,))
    with client_for(registry_plain) as direct:
        push_image(direct, repository, "v1", image)
    outcomes = []
    for _ in range(2):
        proxy = proxies(registry_plain, seed=42, rules=[FaultRule(rate=0.3, kinds=("500", "503"))])
        with RegistryClient(proxy.host, access=access_for(registry_plain), retry=ONCE) as c:
            for _ in range(30):
                with contextlib.suppress(RegistryError):
                    c.head_manifest(repository, "v1")
        outcomes.append([r.fault for r in proxy.requests()])
    assert outcomes[0] == outcomes[1]
    assert 3 <= sum(f is not None for f in outcomes[0]) <= 20


def test_max_streak_lets_every_third_attempt_through(
    registry_plain: RegistryServer, proxies: ProxyFactory
) -> None:
    repository, image = _repo(), build_image(5004, layer_sizes=(100,))
    with client_for(registry_plain) as direct:
        push_image(direct, repository, "v1", image)
    proxy = proxies(registry_plain, rules=[FaultRule(kinds=("503",), max_streak=2)])
    with RegistryClient(proxy.host, access=access_for(registry_plain), retry=ONCE) as c:
        for _ in range(6):
            with contextlib.suppress(RegistryError):
                c.head_manifest(repository, "v1")
        with contextlib.suppress(RegistryError):
            c.list_tags(repository)  # another request: a streak of its own
    faults = [r.fault for r in proxy.requests() if r.kind in ("manifest", "tags")]
    assert faults == ["503", "503", None, "503", "503", None, "503"]


def test_counters_connections_kinds_and_concurrency(
    registry_plain: RegistryServer, proxies: ProxyFactory
) -> None:
    repository, image = _repo(), build_image(5003, layer_sizes=(100,))
    with client_for(registry_plain) as direct:
        push_image(direct, repository, "v1", image)
    proxy = proxies(registry_plain, rules=[FaultRule(kinds=("delay",), delay=0.3)])
    barrier = threading.Barrier(4)

    def head() -> None:
        with RegistryClient(proxy.host, access=access_for(registry_plain)) as c:
            barrier.wait()
            assert c.head_manifest(repository, "v1") is not None

    threads = [threading.Thread(target=head) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = proxy.snapshot()
    assert stats.connections >= 4  # one per client at least (plus any https probe)
    assert stats.requests[("HEAD", "manifest")] == 4
    assert stats.max_inflight == stats.max_inflight_by[("HEAD", "manifest")] == 4
    assert stats.faults == {"delay": 4}


def test_bodies_stream_through_piece_by_piece(
    registry_plain: RegistryServer, proxies: ProxyFactory
) -> None:
    size, repository = 16 * MiB, _repo()
    # ~0.5 s each way: the download is still in flight when its first chunk
    # arrives (unthrottled, socket buffers could hold the whole blob by then).
    proxy = proxies(registry_plain, upload_rate=32 * MiB, download_rate=32 * MiB)
    digest = hashlib.sha256(b"".join(pattern_chunks(size))).hexdigest()
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.extend(r.bytes_up for r in proxy.active() if r.method == "PUT")
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with RegistryClient(proxy.host, access=access_for(registry_plain)) as c:
            c.push_blob(repository, f"sha256:{digest}", pattern_chunks(size), size=size)
            with c.open_blob(repository, f"sha256:{digest}") as blob:
                first = next(blob.iter_chunks())
                [download] = [r for r in proxy.active() if r.method == "GET"]
                assert len(first) > 0 and download.bytes_down < size
    finally:
        done.set()
        watcher.join()
    partial = {n for n in seen if 0 < n < size}
    assert len(partial) >= 5, "the upload was not forwarded piece by piece"


def test_stop_closes_the_listener_and_open_connections_without_resource_warnings(
    registry_plain: RegistryServer,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proxy = FaultProxy(registry_plain.host).start()
        port = proxy.port
        idle = httpx.Client(base_url=f"http://{proxy.host}", timeout=5)
        assert idle.get("/v2/").status_code == 200  # a keep-alive connection stays open
        proxy.stop()
        proxy.stop()  # idempotent
        with pytest.raises(httpx.TransportError):
            idle.get("/v2/")
        idle.close()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        del proxy
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_token_requests_are_routed_through_the_proxy(
    token_proxy: FaultProxy, registry_token: RegistryServer
) -> None:
    tokens = registry_token.token_server
    assert tokens is not None
    with httpx.Client(timeout=5) as raw:
        challenge = raw.get(f"http://{token_proxy.host}/v2/")
        assert challenge.status_code == 401
        realm = challenge.headers["www-authenticate"].split('realm="', 1)[1].split('"', 1)[0]
        assert realm == f"http://{token_proxy.host}/_realm/127.0.0.1:{tokens.port}/token"
        token = raw.get(realm, params={"service": tokens.service})
        assert token.status_code == 200 and token.json()["token"]
    assert token_proxy.snapshot().requests[("GET", "token")] == 1
