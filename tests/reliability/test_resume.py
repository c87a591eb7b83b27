"""Resume proof: a large layer whose connections are cut, on either side or both, completes.

The copy runs the engine's `copy_blob` in a fresh interpreter
(`tests.support.resume_probe`) between two fault proxies in front of real
registries: the source proxy cuts blob bodies every N bytes, the destination
proxy cuts upload bodies likewise. Each run must store the exact digest,
move at most 1.2x the layer on each side (a restart-from-zero design moves
~5x with ten cuts), and peak at the same RSS as the fault-free run
(±20 MB): resuming never buffers the blob.

Bytes are counted by the proxies: body bytes they received from the client
(`bytes_up`, uploads) and sent to it (`bytes_down`, blob GETs).

Peak RSS is the subprocess's `VmHWM`; tracemalloc would miss httpx's and
OpenSSL's buffers, and the pytest process's own high-water mark would hide
any growth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.reliability.conftest import ProxyFactory
from tests.reliability.helpers import ROOT, MiB, seed_large_image
from tests.support.registry_server import RegistryServer
from tests.support.zoo import FaultProxy, FaultRule

pytestmark = pytest.mark.registry

GiB = 1024 * MiB
SIZE = 256 * MiB
SOURCE_REPOSITORY = "resume/source"
RSS_TOLERANCE_KIB = 20 * 1024
MAX_RATIO = 1.2


@dataclass
class Copy:
    """One probe run and what the proxies counted."""

    result: dict[str, Any]
    source_bytes: int
    target_bytes: int
    source: FaultProxy
    target: FaultProxy

    def ratios(self, size: int) -> tuple[float, float]:
        return self.source_bytes / size, self.target_bytes / size

    def describe(self, size: int) -> str:
        read, sent = self.ratios(size)
        return (
            f"{self.result}; source read {read:.3f}x, destination sent {sent:.3f}x; "
            f"source proxy: {self.source.snapshot().summary()}; "
            f"destination proxy: {self.target.snapshot().summary()}"
        )


class Layers:
    """Large layers seeded in the source registry, and the fault-free peak RSS of copying
    each, made once per size for the module."""

    def __init__(self, source: RegistryServer, target: RegistryServer):
        self.source = source
        self.target = target
        self._layers: dict[int, tuple[str, int]] = {}
        self._baselines: dict[int, int] = {}

    def layer(self, size: int) -> tuple[str, int]:
        if size not in self._layers:
            tag = f"large-{size}"
            _, digest = seed_large_image(self.source, SOURCE_REPOSITORY, tag, size, seed=size)
            self._layers[size] = (digest, size)
        return self._layers[size]

    def baseline_rss(self, size: int) -> int:
        """Peak RSS (KiB) of the copy without faults."""
        if size not in self._baselines:
            with _module_proxies() as proxies:
                copy = copy_layer(proxies, self, size)
            assert copy.result["stored_size"] == size, copy.describe(size)
            assert copy.source.snapshot().total_faults == 0
            self._baselines[size] = int(copy.result["rss_peak_kib"])
        return self._baselines[size]


@pytest.fixture(scope="module")
def layers(registry_plain: RegistryServer, registry_plain2: RegistryServer) -> Layers:
    return Layers(registry_plain, registry_plain2)


def source_cuts(every: int) -> FaultRule:
    """Cut every blob body after `every` bytes (each resume gets cut again)."""
    return FaultRule(kinds=("cut",), endpoints=frozenset({"blob"}), cut_bytes=every)


def upload_cuts(every: int, limit: int | None = None, rate: float = 1.0) -> FaultRule:
    """Cut (a share `rate` of) upload bodies after `every` bytes."""
    return FaultRule(
        kinds=("cut-upload",),
        endpoints=frozenset({"upload"}),
        cut_bytes=every,
        limit=limit,
        rate=rate,
    )


def copy_layer(
    proxies: ProxyFactory,
    layers: Layers,
    size: int = SIZE,
    *,
    source_rules: tuple[FaultRule, ...] = (),
    target_rules: tuple[FaultRule, ...] = (),
    resumable: bool = True,
    chunked: int = 0,
) -> Copy:
    digest, _ = layers.layer(size)
    source = proxies(layers.source, rules=source_rules)
    target = proxies(layers.target, rules=target_rules, resumable_uploads=resumable)
    repository = f"resume/{uuid.uuid4().hex[:12]}"
    command = [
        sys.executable,
        *os.environ.get("RESUME_PROBE", "-m tests.support.resume_probe").split(),
        f"{source.host}/{SOURCE_REPOSITORY}",
        f"{target.host}/{repository}",
        digest,
        str(size),
        "--chunked",
        str(chunked),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr[-4000:]}"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    read = sum(r.bytes_down for r in source.requests() if r.method == "GET" and r.kind == "blob")
    sent = sum(r.bytes_up for r in target.requests() if r.method in ("PUT", "PATCH"))
    return Copy(result, read, sent, source, target)


class _module_proxies:
    """Proxies for a module-scoped fixture (the `proxies` fixture is per test)."""

    def __enter__(self) -> ProxyFactory:
        self._started: list[FaultProxy] = []

        def make(upstream: RegistryServer, **options: Any) -> FaultProxy:
            proxy = FaultProxy(upstream.host, **options).start()
            self._started.append(proxy)
            return proxy

        return make

    def __exit__(self, *exc_info: object) -> None:
        for proxy in self._started:
            proxy.stop()


def assert_resumed(copy: Copy, size: int, baseline_rss: int) -> None:
    read, sent = copy.ratios(size)
    print(f"baseline RSS {baseline_rss} KiB; {copy.describe(size)}")  # the measured numbers
    assert copy.result["action"] == "copied", copy.describe(size)
    assert copy.result["stored_size"] == size, copy.describe(size)
    assert read <= MAX_RATIO, copy.describe(size)
    assert sent <= MAX_RATIO, copy.describe(size)
    assert abs(int(copy.result["rss_peak_kib"]) - baseline_rss) <= RSS_TOLERANCE_KIB, (
        f"baseline {baseline_rss} KiB; " + copy.describe(size)
    )


#: Bytes between cuts: the issue's density, one cut per ~100 MiB moved. A cut upload
#: costs the bytes that were in flight towards the registry when it died (the client's
#: socket send buffer and the proxy's unread receive buffer: 6-10 MiB per cut measured on
#: loopback here), re-read from the source; a cut source costs almost nothing (the
#: re-read is ranged). Five cuts of a 256 MiB layer (every 51 MiB) thus measured 1.12x
#: to 1.21x: a budget of 1.2x at twice the issue's density holds only by luck.
EVERY = SIZE // 3

#: (layer size, bytes between cuts): the issue's own 1 GiB case runs as a slow variant.
SCENARIOS = [
    pytest.param(SIZE, EVERY, id="256MiB-every-85MiB"),
    pytest.param(GiB, 100 * MiB, id="1GiB-every-100MiB", marks=pytest.mark.slow),
]


def test_source_cuts_resume_with_range(proxies, layers) -> None:
    copy = copy_layer(
        proxies,
        layers,
        SIZE,
        source_rules=(source_cuts(EVERY),),
    )
    assert copy.source.snapshot().faults["cut"] >= 2, copy.describe(SIZE)
    assert_resumed(copy, SIZE, layers.baseline_rss(SIZE))


def test_destination_cuts_continue_the_session(proxies, layers) -> None:
    copy = copy_layer(
        proxies,
        layers,
        SIZE,
        target_rules=(upload_cuts(EVERY),),
    )
    stats = copy.target.snapshot()
    cuts = stats.faults["cut-upload"]
    assert cuts >= 2, copy.describe(SIZE)
    assert stats.requests[("POST", "upload")] == 1, "one session, continued: " + stats.summary()
    assert stats.requests[("GET", "upload")] == cuts, "asked the session's offset after each cut"
    assert_resumed(copy, SIZE, layers.baseline_rss(SIZE))


@pytest.mark.parametrize(("size", "every"), SCENARIOS)
def test_both_sides_cut_resume_together(proxies, layers, size: int, every: int) -> None:
    copy = copy_layer(
        proxies,
        layers,
        size,
        source_rules=(source_cuts(every),),
        target_rules=(upload_cuts(every),),
    )
    cuts = size // every - 1
    assert copy.source.snapshot().faults["cut"] >= cuts // 2, copy.describe(size)
    assert copy.target.snapshot().faults["cut-upload"] >= cuts // 2, copy.describe(size)
    assert_resumed(copy, size, layers.baseline_rss(size))


def test_chunked_upload_cuts_resume_inside_the_session(proxies, layers) -> None:
    """PATCH chunks of 8 MiB (each held in memory once), a third of them cut after 5 MiB."""
    copy = copy_layer(
        proxies,
        layers,
        SIZE,
        target_rules=(upload_cuts(5 * MiB, rate=0.3),),
        chunked=8 * MiB,
    )
    stats = copy.target.snapshot()
    assert stats.faults["cut-upload"] >= 5, copy.describe(SIZE)
    assert stats.requests[("POST", "upload")] == 1, stats.summary()
    # each cut chunk is continued from the offset the session holds (5 MiB kept of it)
    cuts = stats.faults["cut-upload"]
    assert stats.requests[("GET", "upload")] == cuts, stats.summary()
    assert stats.requests[("PATCH", "upload")] == cuts + -(-(SIZE - cuts * 5 * MiB) // (8 * MiB))
    assert_resumed(copy, SIZE, layers.baseline_rss(SIZE))


def test_a_registry_that_refuses_to_resume_gets_a_new_session(proxies, layers) -> None:
    """distribution 2.8 itself: a cut body invalidates the session (BLOB_UPLOAD_INVALID)."""
    copy = copy_layer(
        proxies,
        layers,
        SIZE,
        target_rules=(upload_cuts(SIZE // 10, limit=1),),
        resumable=False,
    )
    stats = copy.target.snapshot()
    assert stats.faults["cut-upload"] == 1, copy.describe(SIZE)
    assert stats.requests[("POST", "upload")] == 2, "a second session: " + stats.summary()
    statuses = [r.status for r in copy.target.requests() if (r.method, r.kind) == ("GET", "upload")]
    assert statuses == [404], statuses
    assert copy.result["stored_size"] == SIZE, copy.describe(SIZE)
    # restarted once after a tenth: ~1.1x sent and read
    assert max(copy.ratios(SIZE)) <= MAX_RATIO, copy.describe(SIZE)


def test_a_source_that_dies_mid_blob_fails_as_the_source_not_a_digest_mismatch(
    proxies: ProxyFactory, registry_plain: RegistryServer, registry_plain2: RegistryServer
) -> None:
    # The source is cut after 1 MiB, then answers every re-GET with 503: its
    # own resumes run out mid-upload. That is the source's failure, to be
    # retried as such; treating it as a cut upload resumed the destination
    # session with nothing to send and reported a digest mismatch.
    from syncer_core.errors import DigestMismatchError, SourceReadError
    from syncer_core.reference import Reference
    from syncer_core.registry import RegistryAccess, RetryPolicy
    from syncer_core.sync.inspect import BlobTransfer
    from syncer_core.sync.session import SyncSession
    from syncer_core.sync.transfer import copy_blob

    size = 4 * MiB
    _, digest = seed_large_image(registry_plain, "resume/dying", "v1", size, seed=41)
    blob = frozenset({"blob"})
    dying = proxies(
        registry_plain,
        rules=[
            FaultRule(kinds=("cut",), endpoints=blob, cut_bytes=MiB, limit=1),
            FaultRule(kinds=("503",), endpoints=blob),
        ],
    )
    source = Reference.parse(f"{dying.host}/resume/dying")
    target = Reference.parse(f"{registry_plain2.host}/resume/dying-{uuid.uuid4().hex[:8]}")
    session = SyncSession(
        lambda _: RegistryAccess(insecure=True), retry=RetryPolicy(attempts=2, base_delay=0.01)
    )
    try:
        with pytest.raises(SourceReadError) as failure:
            copy_blob(session, BlobTransfer(source, target, digest, size))
        assert not isinstance(failure.value.__cause__, DigestMismatchError)
        assert f"reading blob {digest} from the source" in str(failure.value)
        assert "503" in str(failure.value)
        assert session.client(target).head_blob(target.repository, digest) is None
    finally:
        session.close()
