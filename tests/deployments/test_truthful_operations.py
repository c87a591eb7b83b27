"""What operators see on a real `prefect server`: true states, image events, a firing automation.

One CLI run against the server mirrors a good rule and a rule whose image
cannot be copied (a layer is missing at the source). Everything is read back
through the Prefect API, as the UI and automations read it: the run and the
failing rule are Failed, the good rule is Completed, the failing image's copy
task is Failed with its reason; one event per image outcome; and the shipped
automation (`deployments/automations/failed-run-webhook.yaml`, created by
`deployments/automation.py`) calls a local webhook receiver naming the image.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.deployments.stack import ROOT, PrefectStack
from tests.flows.helpers import auth_entry, delete_blob, first_layer, seed, write_document
from tests.support.images import build_image
from tests.support.registry_server import RegistryServer, running_registry

pytestmark = [pytest.mark.slow, pytest.mark.flow, pytest.mark.timeout(600)]


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every POST body it is sent."""

    def __init__(self) -> None:
        bodies: list[str] = []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(self.rfile.read(length).decode())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, text: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in body for body in self.bodies):
                return list(self.bodies)
            time.sleep(0.5)
        raise AssertionError(f"no webhook call naming {text!r} in {timeout:.0f}s: {self.bodies}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    try:
        yield hook
    finally:
        hook.close()


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    with (
        running_registry("plain", tmp_path / "src") as src,
        running_registry("plain", tmp_path / "dst") as dst,
    ):
        yield src, dst


def _runs(stack: PrefectStack) -> tuple[Any, list[Any], list[Any]]:
    """The newest `image-syncer` run, its rule subflow runs and all their task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (parent,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["image-syncer"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        rules = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])
            )
        )
        ids = [parent.id, *(r.id for r in rules)]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return parent, rules, tasks


def _image_events(run_id: UUID, expected: int, timeout: float = 60.0) -> list[Any]:
    """The image events related to the run, once the server has stored `expected` of them."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    event_filter = EventFilter(
        event=EventNameFilter(prefix=["image-syncer.image."]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    deadline = time.monotonic() + timeout
    events: list[Any] = []
    while time.monotonic() < deadline:  # the server persists events in batches
        with get_client(sync_client=True) as client:
            events = client.read_events(filter=event_filter, limit=50).events
        if len(events) >= expected:
            return events
        time.sleep(0.5)
    raise AssertionError(f"{len(events)} image events of {expected} in {timeout:.0f}s: {events}")


def test_failed_image_fails_its_task_rule_and_run_emits_events_and_fires_the_automation(
    stack: PrefectStack,
    receiver: Receiver,
    registries: tuple[RegistryServer, RegistryServer],
    tmp_path: Path,
):
    src, dst = registries
    S, D = src.host, dst.host
    created = subprocess.run(
        [sys.executable, "deployments/automation.py", "--webhook-url", receiver.url],
        cwd=ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    good, broken = build_image(700), build_image(701)
    seed(src, "team/good", ["v1", "v2"], good)
    seed(src, "team/broken", ["v1"], broken)
    delete_blob(src, "team/broken", first_layer(broken))
    images = write_document(
        tmp_path / "images.yaml",
        {f"{S}/team/good": f"{D}/mirror/good", f"{S}/team/broken:v1": f"{D}/mirror/broken"},
    )
    auth = write_document(tmp_path / "auth.yaml", {s.host: auth_entry(s) for s in (src, dst)})

    result = subprocess.run(
        [sys.executable, "flows/sync.py", "--auth", str(auth), "--images", str(images), "-r", "0"],
        cwd=ROOT,
        env=stack.env(DOCKER_CONFIG=str(tmp_path / "no-docker-config")),
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 1, result.stdout + result.stderr[-4000:]
    parent, rules, tasks = _runs(stack)
    assert parent.state.type.value == "FAILED", parent.state
    assert parent.state.message.startswith("1 of 3 images failed in 1 rule: ")
    assert f"{D}/mirror/broken:v1" in parent.state.message
    by_name = {run.name: run.state for run in rules}
    good_rule = f"rule {S}/team/good -> {D}/mirror/good"
    bad_rule = f"rule {S}/team/broken:v1 -> {D}/mirror/broken"
    assert {name: state.type.value for name, state in by_name.items()} == {
        good_rule: "COMPLETED",
        bad_rule: "FAILED",
    }
    assert by_name[bad_rule].message.startswith("1 of 1 image failed: ")
    task_states = {task.name: task.state for task in tasks}
    copy_broken = task_states[f"copy {D}/mirror/broken:v1"]
    assert copy_broken.type.value == "FAILED"
    assert copy_broken.message.startswith("NotFoundError: ")
    assert first_layer(broken) in copy_broken.message
    assert task_states[f"check {S}/team/good -> {D}/mirror/good"].type.value == "COMPLETED"
    assert task_states[f"copy {D}/mirror/good:v1"].type.value == "COMPLETED"

    events = _image_events(parent.id, expected=3)
    outcomes = {e.resource.id: (e.event, e.resource.get("image-syncer.digest")) for e in events}
    assert outcomes == {
        f"image-syncer.image.{D}/mirror/good:v1": ("image-syncer.image.synced", good.digest),
        f"image-syncer.image.{D}/mirror/good:v2": ("image-syncer.image.synced", good.digest),
        f"image-syncer.image.{D}/mirror/broken:v1": ("image-syncer.image.failed", ""),
    }
    failed_event = next(e for e in events if e.event == "image-syncer.image.failed")
    assert failed_event.resource["image-syncer.source"] == f"{S}/team/broken:v1"
    assert "NotFoundError" in failed_event.payload["reason"]
    rule_runs = {str(r.id) for r in rules}
    assert any(r.id.removeprefix("prefect.flow-run.") in rule_runs for r in failed_event.related)
    synced = [e for e in events if e.event == "image-syncer.image.synced"]
    assert sum(e.payload["bytes"] for e in synced) == good.blob_bytes  # v2 reuses v1's blobs

    bodies = receiver.wait_for(f"{D}/mirror/broken:v1", timeout=90)
    payload = json.loads(next(b for b in bodies if f"{D}/mirror/broken:v1" in b))
    assert payload["flow_run"] == parent.name
    assert payload["state"] == "Failed"
    assert payload["message"] == parent.state.message
