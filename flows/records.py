"""Make sure a run is fully recorded before the process (and an embedded API) exits.

Without `PREFECT_API_URL`, Prefect starts a temporary API server and stops
it when the process exits. Measured here: it is stopped before its event
backlog drains, so most task runs were never recorded or stayed "Running"
forever. `wait_until_recorded` flushes the client's event queue and polls the
API until the flow run, its subflow runs and all their task runs have final
states (and their number stops changing), then lets the process go.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import TaskRun
from prefect.events.worker import EventsWorker

__all__ = ["RecordStatus", "wait_until_recorded"]


@dataclass(frozen=True)
class RecordStatus:
    """What the API holds for a run: flow runs, task runs, how many not final."""

    flow_runs: int
    task_runs: int
    pending: int


def _status(flow_run_id: UUID) -> RecordStatus:
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )
        ids = [flow_run_id, *(run.id for run in children)]
        runs = [client.read_flow_run(flow_run_id), *children]
        tasks = _all_task_runs(client, ids)
    pending = sum(1 for run in runs if not (run.state and run.state.is_final()))
    pending += sum(1 for task in tasks if not (task.state and task.state.is_final()))
    return RecordStatus(len(runs), len(tasks), pending)


def _all_task_runs(client: SyncPrefectClient, ids: list[UUID]) -> list[TaskRun]:
    """Read every task run of these flow runs, page by page."""
    found: list[TaskRun] = []
    offset = 0
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200, offset=offset
        )
        found.extend(page)
        if len(page) < 200:
            return found
        offset += 200


def wait_until_recorded(flow_run_id: UUID, timeout: float = 120.0) -> RecordStatus:
    """Block until every run record is final and stable, or `timeout` passes."""
    EventsWorker.drain_all(timeout=timeout)
    deadline = time.monotonic() + timeout
    previous: RecordStatus | None = None
    while True:
        status = _status(flow_run_id)
        if status.pending == 0 and status == previous:
            return status
        if time.monotonic() > deadline:
            return status
        previous = status
        time.sleep(0.5)
