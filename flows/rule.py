"""One rule of the images file as one Prefect flow run.

check (one task: list tags, plan, HEAD-compare every image) → one task per
changed image (its missing blobs concurrently, then its manifests, children
before their index and the tag last). A rule with nothing to do costs one
task run; a failing image never stops the others, its result carries the
reason.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

from prefect import flow, get_run_logger, unmapped
from pydantic import BaseModel, Field

from flows.followups import prune_after, referrers_after
from flows.limits import registry_limit_name
from flows.tasks import check_rule_task, copy_image_task
from syncer_core.sync.check import Inspection, RuleCheck
from syncer_core.sync.engine import (
    describe_error,
    failed_result,
    planned_result,
    unchanged_result,
)
from syncer_core.sync.inspect import ImagePlan, Unchanged
from syncer_core.sync.results import ImageResult, PruneAction
from syncer_core.sync.session import get_session

__all__ = ["RuleOutcome", "sync_rule"]


class RuleOutcome(BaseModel):
    """What one rule did: its images, or why the whole rule failed."""

    rule: str
    images: list[ImageResult] = Field(default_factory=list)
    error: str | None = None
    referrers: list[ImageResult] = Field(default_factory=list)
    pruned: list[PruneAction] = Field(default_factory=list)


@functools.cache
def _retrying(task_obj, retries: int):  # type: ignore[no-untyped-def]
    """Prefect retries with exponential backoff and jitter (transient errors only).

    Cached: the same task copy serves every rule of a run (and every run
    with the same `retries`).
    """
    delays = [min(60.0, 2.0 * 2**i) for i in range(max(0, retries))]
    return task_obj.with_options(
        retries=retries, retry_delay_seconds=delays or 0, retry_jitter_factor=0.5
    )


def _check(session_id: str, rule_index: int, rule: str, retries: int) -> RuleCheck:
    # Called, not submitted: the rule's thread has nothing else to do meanwhile.
    check: RuleCheck = _retrying(check_rule_task, retries)(session_id, rule_index, rule, retries)
    return check


def _copy_images(
    session_id: str, plans: Sequence[ImagePlan], retries: int, limited: bool
) -> list[ImageResult]:
    """One task per changed image, all mapped at once; a failure is that image's result."""
    started = time.monotonic()
    limits = [registry_limit_name(p.job.target.registry) if limited else None for p in plans]
    futures = _retrying(copy_image_task, retries).map(unmapped(session_id), plans, limits)
    results: list[ImageResult] = []
    for plan, future in zip(plans, futures, strict=True):
        try:
            results.append(future.result())
        except Exception as error:  # noqa: BLE001 - reported per image with its cause
            results.append(failed_result(plan.job, error, time.monotonic() - started))
    return results


def _sort_inspections(
    found: Sequence[Inspection], dry_run: bool
) -> tuple[list[ImageResult], list[ImagePlan]]:
    """Split check outcomes into final results and plans still to execute."""
    results: list[ImageResult] = []
    plans: list[ImagePlan] = []
    for item in found:
        if isinstance(item, Unchanged):
            results.append(unchanged_result(item))
        elif isinstance(item, ImageResult):
            results.append(item)
        elif dry_run:
            results.append(planned_result(item))
        else:
            plans.append(item)
    return results, plans


@flow(name="sync-rule", flow_run_name="rule {rule}", log_prints=False)
def sync_rule(
    session_id: str, rule_index: int, rule: str, retries: int = 2, limited: bool = False
) -> RuleOutcome:
    """Sync the images of one rule.

    Args:
        session_id: the run's session in this process (clients, ledger, bounds).
        rule_index: which rule of the session.
        rule: the rule's name, `<source> -> <destination>` (for the UI).
        retries: Prefect task retries for transient registry errors.
        limited: hold a `registry:<host>` global concurrency slot per blob copy.
    """
    logger = get_run_logger()
    try:
        check = _check(session_id, rule_index, rule, retries)
    except Exception as error:  # noqa: BLE001 - fails this rule only
        logger.error("rule %s failed: %s", rule, describe_error(error))
        return RuleOutcome(rule=rule, error=describe_error(error))
    for warning in check.warnings:
        logger.warning("%s: %s", rule, warning)
    if check.error is not None:
        logger.error("rule %s failed: %s", rule, check.error)
        pruned = prune_after(session_id, rule_index, error=check.error)
        return RuleOutcome(rule=rule, error=check.error, pruned=pruned)
    if not check.found:
        logger.info("rule %s: nothing matched", rule)
        return RuleOutcome(rule=rule, pruned=prune_after(session_id, rule_index))
    results, plans = _sort_inspections(check.found, get_session(session_id).options.dry_run)
    if plans:
        results.extend(_copy_images(session_id, plans, retries, limited))
    for result in results:
        if result.status.value == "failed":
            logger.error("%s -> %s failed: %s", result.source, result.target, result.reason)
    referrers = referrers_after(session_id, rule_index, results)
    pruned = prune_after(session_id, rule_index, results=[*results, *referrers])
    return RuleOutcome(rule=rule, images=results, referrers=referrers, pruned=pruned)
