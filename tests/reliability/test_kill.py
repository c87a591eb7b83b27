"""SIGKILL in the middle of a large upload leaves no broken tag, and the next run converges.

The CLI runs as a subprocess (`python flows/sync.py`, its own Prefect home
and temporary API) against a destination behind a proxy that throttles
uploads, so the 64 MiB layer takes a few seconds to send. When the proxy has
forwarded a quarter of it, the whole process group is killed. A poller reads
every destination tag throughout; afterwards the same command is run again
on the same Prefect home (whose SQLite database the kill interrupted).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from syncer_core.registry import RegistryClient
from tests.reliability.conftest import ProxyFactory
from tests.reliability.helpers import (
    MiB,
    client_for,
    run_cli,
    seed_large_image,
    start_cli,
    subprocess_env,
    tag_digests,
    write_document,
)
from tests.support.images import build_image, build_index, push_image
from tests.support.registry_server import Flavour, RegistryServer, access_for
from tests.support.tag_poller import TagPoller, check_tags
from tests.support.zoo import FaultProxy

pytestmark = [pytest.mark.flow, pytest.mark.registry, pytest.mark.slow]

BIG = 64 * MiB


def _wait_for_big_upload(proxy: FaultProxy, process, timeout: float = 240) -> int:
    """Block until the proxy has forwarded a quarter of a large blob PUT; return its bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before the upload")
        for request in proxy.active():
            if (
                request.method == "PUT"
                and request.kind == "upload"
                and request.bytes_up >= BIG // 4
            ):
                return request.bytes_up
        time.sleep(0.02)
    raise AssertionError("no large upload started in time")


def test_sigkill_mid_upload_leaves_no_broken_tag_and_a_rerun_converges(
    fresh_registry: Callable[[Flavour], RegistryServer], proxies: ProxyFactory, tmp_path: Path
) -> None:
    src, dst = fresh_registry("plain"), fresh_registry("plain")
    expected: dict[str, dict[str, str]] = {}
    with client_for(src) as client:
        for t in range(3):
            image = build_image(8000 + t, layer_sizes=(20_000,))
            push_image(client, "app/small", f"v{t}", image)
            expected.setdefault("app/small", {})[f"v{t}"] = image.digest
        index = build_index(8100, layer_sizes=(5000,))
        push_image(client, "app/multi", "v1", index)
        expected["app/multi"] = {"v1": index.digest}
    big, layer = seed_large_image(src, "app/big", "v1", BIG, seed=81)
    expected["app/big"] = {"v1": big}
    dst_proxy = proxies(dst, upload_rate=16 * MiB)  # 64 MiB take about 4 s
    images = {f"{src.host}/{repo}": f"{dst_proxy.host}/{repo}" for repo in expected}
    auth = {src.host: {"insecure": True}, dst_proxy.host: {"insecure": True}}
    args = [
        *("--images", str(write_document(tmp_path / "images.yaml", images))),
        *("--auth", str(write_document(tmp_path / "auth.yaml", auth))),
        *("--report", str(tmp_path / "report.json")),
        *("--retries", "1"),
    ]
    env = subprocess_env(tmp_path / "prefect-home")

    with TagPoller(dst.host, access_for(dst), list(expected)) as poller:
        process = start_cli(args, env, tmp_path / "killed-run.log")
        try:
            sent = _wait_for_big_upload(dst_proxy, process)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the CLI and its temporary Prefect API
            process.wait(30)
        poller.settle()  # a full sweep after the kill too

    print(f"\nkilled after {sent / MiB:.0f} MiB of the layer; poller: {poller.summary()}")
    assert process.returncode == -signal.SIGKILL
    assert poller.violations == [] and poller.errors == []
    with RegistryClient(dst.host, access=access_for(dst)) as client:
        assert check_tags(client, list(expected)) == []
        assert client.head_blob("app/big", layer) is None  # nothing half-written was committed
    assert tag_digests(dst, "app/big") == {}

    dst_proxy.upload_rate = None
    rerun = run_cli(args, env)

    assert rerun.code == 0, rerun.describe() + (tmp_path / "killed-run.log").read_text()[-3000:]
    for repository, tags in expected.items():
        assert tag_digests(dst, repository) == tags, repository
