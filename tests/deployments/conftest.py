"""Fixtures of the deployment tier: a real `prefect server` (SQLite), `prefect deploy`, workers.

One server, one `prefect --no-prompt deploy --all` from the checkout root and
one pair of process workers serve the whole module; everything is stopped by
PID at teardown, also when a test or a fixture fails. The test process talks
to the same server (its Prefect settings point at it while the module runs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

from tests.deployments.stack import POOL, PrefectStack, Process
from tests.support.registry_server import RegistryServer, registry_binary, running_registry

WORKERS = ("worker-a", "worker-b")
#: Flow runs per worker at once (`--limit`). A fan-out parent waiting for its shards holds
#: one slot of one worker, leaving it 1 and the other 2: no worker can hold more than two
#: of the four shards, and while the others wait the worker with a free slot is the only
#: one polling for them (a shard lasts several seconds, workers poll every second). With
#: 3 slots each, a worker finished a shard within the submission window and took all four.
WORKER_LIMIT = 2
DEPLOYMENTS = ("image-syncer/nightly", "image-syncer/fan-out", "image-syncer/shard")


@dataclass
class Deployed:
    """The stack after `prefect deploy --all`, with its workers polling the pool."""

    stack: PrefectStack
    ids: dict[str, UUID]
    workers: dict[str, Process]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    """`prefect server start` on a free port with a fresh PREFECT_HOME (SQLite)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )

    registry_binary()  # skip (or fail in CI) before starting anything without a registry
    prefect_stack = PrefectStack(tmp_path_factory.mktemp("prefect-stack"))
    try:
        prefect_stack.start_server()
        updates = {PREFECT_API_URL: prefect_stack.api_url, PREFECT_SERVER_ANALYTICS_ENABLED: False}
        with temporary_settings(updates=updates):
            yield prefect_stack
    finally:
        prefect_stack.stop()


def _wait_for_workers(names: tuple[str, ...], workers: dict[str, Process], timeout: float) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    online: set[str] = set()
    while time.monotonic() < deadline:
        for worker in workers.values():
            if not worker.alive():
                raise RuntimeError(f"{worker.name} exited:\n{worker.tail()}")
        with get_client(sync_client=True) as client:
            online = {w.name for w in client.read_workers_for_work_pool(POOL)}
        if online.issuperset(names):
            return
        time.sleep(0.5)
    tails = "\n\n".join(f"{w.name}:\n{w.tail()}" for w in workers.values())
    raise RuntimeError(f"workers not registered in {timeout:.0f}s (online: {online}):\n{tails}")


@pytest.fixture(scope="module")
def deployed(stack: PrefectStack) -> Deployed:
    """Work pool, `prefect --no-prompt deploy --all` from the checkout root, two workers."""
    from prefect.client.orchestration import get_client

    stack.cli("work-pool", "create", POOL, "--type", "process")
    # Workers boot (importing Prefect takes seconds) while the deploy runs.
    workers = {name: stack.start_worker(name, WORKER_LIMIT) for name in WORKERS}
    stack.cli("--no-prompt", "deploy", "--all")
    with get_client(sync_client=True) as client:
        ids = {name: client.read_deployment_by_name(name).id for name in DEPLOYMENTS}
    _wait_for_workers(WORKERS, workers, timeout=60)
    return Deployed(stack, ids, workers)


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain registry seeded with the demo images of `deployments/demo.py`."""
    from deployments.demo import seed

    with running_registry("plain", tmp_path_factory.mktemp("demo-source")) as server:
        seed(server)
        yield server


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[RegistryServer]:
    """An empty plain registry for one test."""
    with running_registry("plain", tmp_path / "destination") as server:
        yield server


@pytest.fixture
def tmp_files(tmp_path: Path) -> Path:
    """A directory for the images and auth files of one test."""
    path = tmp_path / "files"
    path.mkdir()
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs the real registry binary as well as the Prefect stack."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.registry)
