"""Smoke test of the benchmark's Prefect floor case (`bench/floor.py`), both models.

Runs each model in-process against the session's Prefect harness and checks
what Prefect recorded: one subflow run per rule, children of the parent run,
each with exactly one Completed task run. Never timings.
"""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)

from bench import floor
from flows.records import wait_until_recorded

pytestmark = pytest.mark.flow

RULES = 3


def _recorded_children(parent: UUID) -> dict[UUID, list[str | None]]:
    """Each subflow run of `parent`, with the state names of its task runs."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])
            )
        )
        found: dict[UUID, list[str | None]] = {}
        for child in children:
            assert child.state is not None and child.state.is_completed(), child
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[child.id]))
            )
            found[child.id] = [t.state.name if t.state else None for t in tasks]
    return found


@pytest.mark.timeout(180)
@pytest.mark.parametrize("model", floor.MODELS)
def test_floor_records_one_completed_task_per_rule_subflow(
    prefect_api: None, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    summary, parent = floor.run_floor(model, RULES)

    assert set(summary) == {"model", "rules", "concurrency", "seconds", "subflows_completed"}
    assert summary["model"] == model and summary["rules"] == RULES
    assert summary["subflows_completed"] == RULES
    assert summary["concurrency"] == 4  # the harness is an API URL: image-syncer's default
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0
    assert wait_until_recorded(parent).pending == 0
    children = _recorded_children(parent)
    assert len(children) == RULES, children
    assert all(states == ["Completed"] for states in children.values()), children


def test_floor_cli_prints_and_writes_the_report(
    prefect_api: None, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "floor.json"
    code = floor.main(
        ["--rules", "2", "--model", "ours", "--concurrency", "1", "--report", str(report)]
    )

    assert code == 0
    written = json.loads(report.read_text())
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert written == printed
    assert (written["model"], written["rules"], written["concurrency"]) == ("ours", 2, 1)
    assert written["subflows_completed"] == 2
