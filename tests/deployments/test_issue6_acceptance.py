"""Issue #6 acceptance against a real `prefect server` (SQLite), `prefect deploy` and workers.

The deployments come from `prefect.yaml` exactly as the walk-through in
`deployments/README.md` creates them (`prefect --no-prompt deploy --all` from
the checkout root); runs are triggered through the API with the images and
auth files of each test as parameters, and executed by two process workers.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from flows.limits import ensure_registry_limits, registry_limit_name
from syncer_core.registry import RegistryClient
from tests.deployments.conftest import WORKERS, Deployed
from tests.deployments.stack import POOL, ROOT
from tests.support.images import build_image, push_image
from tests.support.registry_server import RegistryServer, access_for, running_registry
from tests.support.zoo import FaultProxy

# The first test also pays for the module's stack (~30 s unloaded), so allow more than 300 s.
pytestmark = [pytest.mark.slow, pytest.mark.flow, pytest.mark.timeout(600)]

EXAMPLES = ROOT / "deployments" / "examples"
#: What `deployments/examples/nightly.yaml` mirrors: (source repository, tag, target repository).
NIGHTLY_IMAGES = [
    ("demo/app", "1.0", "nightly/app"),
    ("demo/app", "1.1", "nightly/app"),
    ("demo/app", "2.0", "nightly/app"),
    ("demo/multi", "v1", "nightly/multi"),
    ("demo/multi-docker", "v1", "nightly/multi-docker"),
    ("demo/oci", "v1", "nightly/oci"),
]
RUN_TIMEOUT = 150.0


# -- helpers -------------------------------------------------------------------------------------


def write_yaml(path: Path, data: Mapping[str, Any]) -> str:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return str(path)


def auth_file(path: Path, *servers: str, extra: Mapping[str, Any] | None = None) -> str:
    """An auth file marking each `host:port` insecure (plain HTTP), plus `extra` entries."""
    data: dict[str, Any] = {host: {"insecure": True} for host in servers}
    data.update(extra or {})
    return write_yaml(path, data)


def flow_run_logs(flow_run_id: UUID) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def describe_run(flow_run: Any) -> str:
    state = flow_run.state.name if flow_run.state else "no state"
    lines = "\n".join(flow_run_logs(flow_run.id)[-40:])
    return f"flow run {flow_run.name} ({flow_run.id}) ended {state}:\n{lines}"


def run(deployment: str, parameters: Mapping[str, Any]) -> Any:
    """Create a flow run through the API, wait for a worker to finish it, check it completed."""
    from prefect.deployments import run_deployment

    flow_run: Any = run_deployment(
        deployment,
        parameters=dict(parameters),
        timeout=RUN_TIMEOUT,
        poll_interval=1,
        as_subflow=False,
    )
    assert flow_run.state is not None and flow_run.state.is_completed(), describe_run(flow_run)
    return flow_run


def child_runs(parent_id: UUID) -> list[Any]:
    """The flow runs started by a flow run (the shards of a fan-out run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    flow_run_filter = FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
    )
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=flow_run_filter)


def worker_of(deployed: Deployed, flow_run_id: UUID) -> str:
    """The worker that ran a flow run: from the API's events, confirmed by the worker logs.

    Both workers may try to submit the same run; the server lets one move it to
    Pending and the other logs "Aborted submission". Only the winner emits
    `prefect.worker.submitted-flow-run`.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    names: list[str] = []
    deadline = time.monotonic() + 30  # events are persisted in batches
    while not names and time.monotonic() < deadline:
        event_filter = EventFilter(
            event=EventNameFilter(name=["prefect.worker.submitted-flow-run"]),
            related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        )
        with get_client(sync_client=True) as client:
            page = client.read_events(filter=event_filter, limit=50)  # the server caps it at 50
        names = [e.resource["prefect.resource.name"] for e in page.events]
        if not names:
            time.sleep(0.5)
    assert len(names) == 1, f"submitted-flow-run events for {flow_run_id}: {names}"
    in_logs = [
        name
        for name, worker in deployed.workers.items()
        if f"submitting flow run '{flow_run_id}'"
        in (text := worker.log.read_text(errors="replace"))
        and f"Aborted submission of flow run '{flow_run_id}'" not in text
    ]
    assert in_logs == names, f"worker logs say {in_logs}, events say {names}"
    return names[0]


def digests(server: RegistryServer, refs: Iterable[tuple[str, str]]) -> dict[str, str | None]:
    """`repo:tag` → manifest digest (None if absent) in a registry."""
    found: dict[str, str | None] = {}
    with RegistryClient(server.host, access=access_for(server)) as client:
        for repository, tag in refs:
            head = client.head_manifest(repository, tag)
            found[f"{repository}:{tag}"] = head.digest if head else None
    return found


def assert_mirrored(
    source: RegistryServer, destination: RegistryServer, images: list[tuple[str, str, str]]
) -> None:
    """Every image is in the destination under its target name with its source digest."""
    src = digests(source, [(repo, tag) for repo, tag, _ in images])
    dst = digests(destination, [(target, tag) for _, tag, target in images])
    expected = {f"{t}:{tag}": src[f"{r}:{tag}"] for r, tag, t in images}
    assert all(expected.values()), f"source images missing: {src}"
    assert dst == expected


def read_artifacts(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (touching ends do not overlap)."""
    spans = list(intervals)
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# -- tests ---------------------------------------------------------------------------------------


def test_fan_out_spreads_shards_over_both_workers(
    deployed: Deployed, demo_source: RegistryServer, destination: RegistryServer, tmp_files: Path
) -> None:
    # The example rules, pointed at this test's registries.
    nightly = (EXAMPLES / "nightly.yaml").read_text()
    nightly = nightly.replace("127.0.0.1:5101", demo_source.host)
    nightly = nightly.replace("127.0.0.1:5102", destination.host)
    (tmp_files / "images.yaml").write_text(nightly)
    parameters = {
        "images": str(tmp_files / "images.yaml"),
        "auth": auth_file(tmp_files / "auth.yaml", demo_source.host, destination.host),
        "registry": destination.host,
    }

    parent = run("image-syncer/fan-out", parameters)

    # Every shard ran as its own flow run of the shard deployment, under the parent.
    shards = child_runs(parent.id)
    assert len(shards) == 4, [s.name for s in shards]  # one per source repository
    assert {s.deployment_id for s in shards} == {deployed.ids["image-syncer/shard"]}
    assert sorted(s.name for s in shards) == [f"shard {i}/4" for i in range(1, 5)]
    for shard in shards:
        assert shard.state is not None and shard.state.is_completed(), describe_run(shard)
        assert shard.work_pool_name == POOL
    covered = sorted(i for s in shards for i in s.parameters["shard"])
    assert covered == [0, 1, 2, 3]
    # Each in its own process, and both workers took some.
    assert len({s.infrastructure_pid for s in shards}) == 4
    by_worker = {s.name: worker_of(deployed, s.id) for s in shards}
    assert set(by_worker.values()) == set(WORKERS), by_worker

    # All images arrived with their source digests.
    assert_mirrored(demo_source, destination, NIGHTLY_IMAGES)

    # The parent's report lists every image, gathered from the shards' result tables.
    artifacts = read_artifacts(parent.id)
    reports = [a for a in artifacts if a.key == "image-sync-report"]
    assert len(reports) == 1, [a.key for a in artifacts]
    report = str(reports[0].data)
    assert "images synced 6 / skipped 0 / failed 0" in report
    for _, tag, target in NIGHTLY_IMAGES:
        assert re.search(rf"`{re.escape(destination.host)}/{target}:{tag}` \| synced", report)
    rows = [
        row
        for shard in shards
        for artifact in read_artifacts(shard.id)
        if artifact.type == "table"
        for row in json.loads(str(artifact.data))
    ]
    assert sorted(row["target"] for row in rows) == sorted(
        f"{destination.host}/{target}:{tag}" for _, tag, target in NIGHTLY_IMAGES
    )


def test_fan_out_fails_when_a_shard_fails_and_the_good_shard_still_completes(
    deployed: Deployed, demo_source: RegistryServer, destination: RegistryServer, tmp_files: Path
) -> None:
    from prefect.deployments import run_deployment

    S, D = demo_source.host, destination.host
    images = write_yaml(
        tmp_files / "images.yaml",
        {f"{S}/demo/app:1.0": f"{D}/fan/app", f"{S}/demo/oci:no-such-tag": f"{D}/fan/oci"},
    )
    parameters = {"images": images, "auth": auth_file(tmp_files / "auth.yaml", S, D)}

    parent: Any = run_deployment(
        "image-syncer/fan-out", parameters=parameters, timeout=RUN_TIMEOUT, poll_interval=1
    )

    assert parent.state is not None and parent.state.is_failed(), describe_run(parent)
    assert parent.state.message.startswith("1 of 2 images failed in 1 rule: ")
    assert f"{D}/fan/oci:no-such-tag" in parent.state.message
    shards = {tuple(s.parameters["shard"]): s for s in child_runs(parent.id)}
    assert set(shards) == {(0,), (1,)}
    assert shards[(0,)].state.is_completed(), describe_run(shards[(0,)])
    assert shards[(1,)].state.is_failed(), describe_run(shards[(1,)])
    assert_mirrored(demo_source, destination, [("demo/app", "1.0", "fan/app")])


def test_registry_limit_caps_blob_uploads_across_workers(
    deployed: Deployed, tmp_path: Path, tmp_files: Path
) -> None:
    from prefect.client.orchestration import get_client

    layers = [1536 * 1024 - 4096 * i for i in range(6)]
    repos = [f"load/r{i}" for i in range(4)]
    with (
        running_registry("plain", tmp_path / "load-source") as source,
        running_registry("plain", tmp_path / "load-destination") as target,
        # ~0.25 s per blob upload, so overlapping uploads are plainly visible.
        FaultProxy(target.host, upload_rate=6 * 1024 * 1024) as proxy,
    ):
        with RegistryClient(source.host, access=access_for(source)) as client:
            for i, repo in enumerate(repos):
                push_image(client, repo, "v1", build_image(600 + i, layer_sizes=layers))
        images = {f"{source.host}/{repo}:v1": f"{proxy.host}/{repo}" for repo in repos}
        parameters = {
            "images": write_yaml(tmp_files / "images.yaml", images),
            "auth": auth_file(tmp_files / "auth.yaml", source.host, proxy.host),
            "registry": proxy.host,
            "proc": 8,
            "registry_limit": 2,
        }

        parent = run("image-syncer/fan-out", parameters)

        assert_mirrored(source, target, [(repo, "v1", repo) for repo in repos])
        limit_name = registry_limit_name(proxy.host)

    # A cold sync: every blob (6 layers + config per image) uploaded once, never more than
    # two at a time across both workers; and two at a time did happen (the cap was reached).
    uploads = proxy.uploads()
    assert len(uploads) == len(repos) * (len(layers) + 1)
    assert all(u.ended is not None and u.status == 201 for u in uploads)
    peak = max_overlap((u.started, u.ended) for u in uploads if u.ended is not None)
    assert (peak, proxy.snapshot().max_inflight_by[("PUT", "upload")]) == (2, 2)
    # The shards that moved the blobs ran on both workers.
    shards = child_runs(parent.id)
    assert len(shards) == 4
    assert {worker_of(deployed, s.id) for s in shards} == set(WORKERS)
    # The limit the shards created (the first one to start) is there, with 2 slots, all free.
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name)
    assert limit.limit == 2
    assert limit.active_slots == 0


def test_ensure_registry_limits_tolerates_a_concurrent_creator(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shards starting together both find the limit missing; the slower one must not fail."""
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.exceptions import ObjectNotFound

    host = f"127.0.0.1:{secrets.randbelow(10000) + 40000}"
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=registry_limit_name(host), limit=3)
        )

    def not_yet(self: Any, name: str) -> Any:  # what the slower shard saw a moment earlier
        raise ObjectNotFound(http_exc=Exception(name))

    monkeypatch.setattr(SyncPrefectClient, "read_global_concurrency_limit_by_name", not_yet)
    assert ensure_registry_limits([host], 2) == [registry_limit_name(host)]
    monkeypatch.undo()
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(registry_limit_name(host)).limit == 3


def test_nightly_schedule_is_visible_through_the_api(deployed: Deployed) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.schedules import CronSchedule

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("image-syncer/nightly")
        others = [
            client.read_deployment(deployed.ids[n])
            for n in deployed.ids
            if n != "image-syncer/nightly"
        ]
        assert len(nightly.schedules) == 1
        schedule = nightly.schedules[0]
        assert schedule.active
        assert isinstance(schedule.schedule, CronSchedule)
        assert schedule.schedule.cron == "0 2 * * *"
        assert schedule.schedule.timezone == "Europe/Berlin"
        assert all(not d.schedules for d in others)
        for deployment in [nightly, *others]:
            assert deployment.work_pool_name == POOL
            # `{{ $PWD }}` was resolved at deploy time to the checkout root.
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
            ]
        # The scheduler has put the next nights on the calendar: 02:00 in Berlin.
        deadline = time.monotonic() + 30
        scheduled: list[Any] = []
        while not scheduled and time.monotonic() < deadline:
            scheduled = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[nightly.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    )
                ),
            )
            time.sleep(0.5)
    assert scheduled, "no scheduled runs of image-syncer/nightly"
    for flow_run in scheduled:
        local = flow_run.expected_start_time.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (2, 0), local


def test_run_triggered_like_the_ui_completes_and_can_be_screenshot(
    deployed: Deployed,
    demo_source: RegistryServer,
    destination: RegistryServer,
    tmp_path: Path,
    tmp_files: Path,
) -> None:
    from prefect.client.orchestration import get_client

    images = {f"{demo_source.host}/demo/oci:v1": f"{destination.host}/ui/oci"}
    parameters = {
        "images": write_yaml(tmp_files / "images.yaml", images),
        "auth": auth_file(tmp_files / "auth.yaml", demo_source.host, destination.host),
        "registry": destination.host,
    }
    # What the UI's Run button does: POST /deployments/{id}/create_flow_run.
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(
            deployed.ids["image-syncer/nightly"], parameters=parameters
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            flow_run = client.read_flow_run(flow_run.id)
            if flow_run.state is not None and flow_run.state.is_final():
                break
            time.sleep(1)
    assert flow_run.state is not None and flow_run.state.is_completed(), describe_run(flow_run)
    assert worker_of(deployed, flow_run.id) in WORKERS
    assert_mirrored(demo_source, destination, [("demo/oci", "v1", "ui/oci")])

    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        message = (
            "the UI-triggered run completed; only its screenshot was not taken: "
            "chromium is missing (apt-get install -y chromium)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs chromium: a missing one is a broken setup
        pytest.skip(message)
    out = tmp_path / "run.png"
    command = [
        sys.executable,
        str(ROOT / "deployments" / "screenshot.py"),
        str(flow_run.id),
        "--ui",
        deployed.stack.ui_url,
        "--out",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, check=False)
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (1600, 1000)
    assert out.stat().st_size > 20_000  # a rendered page, not a blank canvas
    keep = deployed.stack.workdir / "run.png"
    shutil.copyfile(out, keep)
    print(f"screenshot: {keep}")


def test_secret_block_password_never_stored_or_logged(
    deployed: Deployed, demo_source: RegistryServer, tmp_path: Path, tmp_files: Path
) -> None:
    from prefect.blocks.system import Secret

    block = f"mirror-password-{secrets.token_hex(4)}"
    with running_registry("htpasswd", tmp_path / "htpasswd") as target:
        assert target.username and target.password
        Secret(value=target.password).save(block)
        images = {f"{demo_source.host}/demo/app:1.0": f"{target.host}/secret/app"}
        credentials = {
            target.host: {
                "insecure": True,
                "username": target.username,
                "password": f"{{{{ prefect.blocks.secret.{block} }}}}",
            }
        }
        parameters = {
            "images": write_yaml(tmp_files / "images.yaml", images),
            "auth": auth_file(tmp_files / "auth.yaml", demo_source.host, extra=credentials),
            "registry": target.host,
        }
        assert target.password not in Path(parameters["auth"]).read_text()
        flow_run = run("image-syncer/nightly", parameters)
        assert worker_of(deployed, flow_run.id) in WORKERS
        assert_mirrored(demo_source, target, [("demo/app", "1.0", "secret/app")])
        # The destination really wants the password: anonymous requests are refused.
        assert httpx.get(f"{target.url}/v2/", timeout=10).status_code == 401
        password = target.password.encode()
        basic = base64.b64encode(f"{target.username}:{target.password}".encode())
        registry_logs = sorted(target.workdir.glob("*.log"))

    stack = deployed.stack
    database = [p for p in stack.home.glob("prefect.db*") if p.is_file()]
    assert stack.database in database
    searched = [*database, *stack.log_files(), *registry_logs]
    leaks = [str(p) for p in searched if password in p.read_bytes() or basic in p.read_bytes()]
    assert leaks == []
    # The search looks at the right bytes: the block's name and the run are in the database.
    stored = b"".join(p.read_bytes() for p in database)
    assert block.encode() in stored
    assert str(flow_run.id).encode() in stored
