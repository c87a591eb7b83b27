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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.events.worker import EventsWorker

__all__ = ["RecordStatus", "wait_until_recorded"]

T = TypeVar("T")
#: Records per read (the server's default and maximum page is 200).
_PAGE = 200


@dataclass(frozen=True)
class RecordStatus:
    """What the API holds for a run: flow runs, task runs, how many not final."""

    flow_runs: int
    task_runs: int
    pending: int


def _status(flow_run_id: UUID) -> RecordStatus:
    with get_client(sync_client=True) as client:
        children = _all_pages(
            lambda offset: client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
                ),
                limit=_PAGE,
                offset=offset,
            )
        )
        ids = [flow_run_id, *(run.id for run in children)]
        runs = [client.read_flow_run(flow_run_id), *children]
        tasks = _all_pages(
            lambda offset: client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                limit=_PAGE,
                offset=offset,
            )
        )
    pending = sum(1 for run in runs if not (run.state and run.state.is_final()))
    pending += sum(1 for task in tasks if not (task.state and task.state.is_final()))
    return RecordStatus(len(runs), len(tasks), pending)


def _all_pages(read: Callable[[int], list[T]]) -> list[T]:
    """Every record of a filtered read, page by page (the API caps a page at 200)."""
    found: list[T] = []
    while True:
        page = read(len(found))
        found.extend(page)
        if len(page) < _PAGE:
            return found


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
