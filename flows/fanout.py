"""Scale-out: shards of rules as flow runs of a deployment, picked up by any worker.

Rules are grouped by source repository (tags of one repository share
layers, so dedup and mounts work best inside one shard) and spread over
shards. Each shard becomes a flow run of the deployment (`run_deployment`,
as a subflow of the dispatching run), which any worker polling the work pool
may execute. Each shard run publishes its per-image results as a table
artifact; the dispatcher reads them back through the API, so the results
travel the same way whichever machine ran the shard.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from flows.rule import RuleOutcome
from syncer_core.config.rules import SyncRule
from syncer_core.sync.results import ImageResult

__all__ = ["RESULTS_DESCRIPTION", "dispatch_shards", "publish_results", "shard_rules"]

RESULTS_DESCRIPTION = "image-syncer results (one row per image; rows with a rule error)"


def shard_rules(rules: Sequence[SyncRule], shards: int = 0) -> list[list[int]]:
    """Group rule indices by source repository, then balance groups over shards.

    Args:
        rules: the rules of the run.
        shards: how many shards; 0 means one per source repository.

    Returns:
        Non-empty lists of rule indices, each group kept whole.
    """
    groups: dict[str, list[int]] = {}
    for index, rule in enumerate(rules):
        groups.setdefault(rule.source.repository.name, []).append(index)
    ordered = sorted(groups.values(), key=len, reverse=True)
    count = len(ordered) if shards <= 0 else min(shards, len(ordered))
    bins: list[list[int]] = [[] for _ in range(count)]
    for group in ordered:  # largest first into the emptiest bin
        min(bins, key=len).extend(group)
    return [sorted(b) for b in bins if b]


def publish_results(outcomes: Sequence[RuleOutcome]) -> None:
    """Publish every image result (and rule error) of this run as a table artifact."""
    rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        if outcome.error is not None:
            rows.append(
                {
                    "rule": outcome.rule,
                    "rule_error": outcome.error,
                    "rule_key": outcome.key,
                    "rule_target": outcome.target,
                }
            )
        rows.extend(json.loads(image.model_dump_json()) for image in outcome.images)
    create_table_artifact(rows, description=RESULTS_DESCRIPTION)


def _read_results(flow_run_id: UUID) -> list[RuleOutcome] | None:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                type=ArtifactFilterType(any_=["table"]),
            )
        )
    tables = [a for a in artifacts if a.description == RESULTS_DESCRIPTION]
    if not tables:
        return None
    data = tables[0].data
    decoded: Any = json.loads(data) if isinstance(data, str) else data
    rows: list[dict[str, Any]] = decoded if isinstance(decoded, list) else []
    outcomes: dict[str, RuleOutcome] = {}
    for row in rows:
        outcome = outcomes.setdefault(row["rule"], RuleOutcome(rule=row["rule"]))
        if "rule_error" in row:
            outcome.error = row["rule_error"]
            outcome.key = row.get("rule_key", "")
            outcome.target = row.get("rule_target", "")
        else:
            outcome.images.append(ImageResult.model_validate(row))
    return list(outcomes.values())


def _run_shard(
    deployment: str, parameters: dict[str, Any], shard: list[int], label: str
) -> list[RuleOutcome]:
    try:
        flow_run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync call
            deployment,
            parameters={**parameters, "shard": shard, "dispatch_to": None},
            flow_run_name=label,
            poll_interval=2,
            as_subflow=True,
        )
    except Exception as error:  # noqa: BLE001 - one shard's failure is reported, not fatal
        return [RuleOutcome(rule=label, error=f"dispatch failed: {type(error).__name__}: {error}")]
    results = _read_results(flow_run.id)
    state = flow_run.state
    if results is None:
        name = state.name if state else "unknown"
        return [RuleOutcome(rule=label, error=f"shard run ended {name} without results")]
    failed = any(o.error or any(i.status.value == "failed" for i in o.images) for o in results)
    if state is not None and not state.is_completed() and not failed:
        # Its results say all is well, its state does not: believe the failure.
        reason = f"shard run ended {state.name}: {state.message or 'no message'}"
        results.append(RuleOutcome(rule=label, error=reason))
    return results


def dispatch_shards(
    deployment: str, parameters: dict[str, Any], shards: list[list[int]]
) -> list[RuleOutcome]:
    """Run each shard as a flow run of `deployment`, all at once; gather their results."""
    with ThreadPoolExecutor(max(1, len(shards))) as pool:
        futures = [
            pool.submit(
                contextvars.copy_context().run,
                _run_shard,
                deployment,
                parameters,
                shard,
                f"shard {i + 1}/{len(shards)}",
            )
            for i, shard in enumerate(shards)
        ]
        return [outcome for future in futures for outcome in future.result()]
