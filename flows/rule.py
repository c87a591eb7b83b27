"""One rule of the images file as one Prefect flow run.

check (one task: list tags, plan, HEAD-compare every image) → one task per
changed image (its missing blobs concurrently, then its manifests, children
before their index and the tag last). A rule with nothing to do costs one
task run; a failing image never stops the others, its result carries the
reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefect import flow, get_run_logger, unmapped
from prefect.client.schemas.objects import State
from pydantic import BaseModel, Field

from flows.events import image_events
from flows.followups import prune_after, referrers_after
from flows.limits import registry_limit_name
from flows.pushback import rule_started
from flows.states import outcome_state, state_data
from flows.tasks import check_rule_task, copy_image_task, retrying
from syncer_core.sync.check import Inspection, RuleCheck
from syncer_core.sync.dryrun import planned_result
from syncer_core.sync.engine import (
    describe_error,
    failed_result,
    unchanged_result,
)
from syncer_core.sync.inspect import ImagePlan, Unchanged
from syncer_core.sync.results import ImageResult, ImageStatus, PruneAction
from syncer_core.sync.session import SyncSession, get_session

__all__ = ["RuleOutcome", "sync_rule"]


class RuleOutcome(BaseModel):
    """What one rule did: its images, or why the whole rule failed.

    `key` and `target` are the rule as the images file wrote it, so a rule
    that failed before its images were known can be handed back whole.
    """

    rule: str
    images: list[ImageResult] = Field(default_factory=list)
    error: str | None = None
    key: str = ""
    target: str = ""
    referrers: list[ImageResult] = Field(default_factory=list)
    pruned: list[PruneAction] = Field(default_factory=list)

    def __repr__(self) -> str:
        # Prefect logs a failed state with its data's repr: keep it one short line.
        failed = sum(1 for i in self.images if i.status.value == "failed")
        return f"RuleOutcome({self.rule!r}, images={len(self.images)}, failed={failed})"


def _check(session_id: str, rule_index: int, rule: str, retries: int) -> RuleCheck:
    """The rule's check; a Failed check task still carries it (failed images inside)."""
    # Called, not submitted: the rule's thread has nothing else to do meanwhile.
    state = retrying(check_rule_task, retries)(
        session_id, rule_index, rule, retries, return_state=True
    )
    check = state_data(state)
    if isinstance(check, BaseException):
        raise check
    assert isinstance(check, RuleCheck)
    return check


def _copy_images(
    session_id: str, plans: Sequence[ImagePlan], retries: int, limited: bool
) -> list[ImageResult]:
    """One task per changed image, all mapped at once; a failure is that image's result."""
    started = time.monotonic()
    limits = [registry_limit_name(p.job.target.registry) if limited else None for p in plans]
    futures = retrying(copy_image_task, retries).map(unmapped(session_id), plans, limits)
    progress = get_session(session_id).progress
    for future in futures:  # counted when each image's task is final, retries included
        future.add_done_callback(lambda _: progress.image_done())
    results: list[ImageResult] = []
    for plan, future in zip(plans, futures, strict=True):
        try:
            results.append(future.result())
        except Exception as error:  # noqa: BLE001 - reported per image with its cause
            results.append(failed_result(plan.job, error, time.monotonic() - started))
    return results


def _sort_inspections(
    session: SyncSession, found: Sequence[Inspection]
) -> tuple[list[ImageResult], list[ImagePlan]]:
    """Split check outcomes into final results and plans still to execute."""
    dry_run = session.options.dry_run
    results: list[ImageResult] = []
    plans: list[ImagePlan] = []
    for item in found:
        if isinstance(item, Unchanged):
            results.append(unchanged_result(item))
        elif isinstance(item, ImageResult):
            results.append(item)
        elif dry_run:
            results.append(planned_result(session, item))
        else:
            plans.append(item)
    return results, plans


@flow(name="sync-rule", flow_run_name="rule {rule}", log_prints=False)
def sync_rule(
    session_id: str, rule_index: int, rule: str, retries: int = 2, limited: bool = False
) -> State[RuleOutcome]:
    """Sync the images of one rule; Failed when its listing or any image failed.

    Args:
        session_id: the run's session in this process (clients, ledger, bounds).
        rule_index: which rule of the session.
        rule: the rule's name, `<source> -> <destination>` (for the UI).
        retries: Prefect task retries for transient registry errors.
        limited: hold a `registry:<host>` global concurrency slot per blob copy.
    """
    rule_started()  # the next rule may start (`flows.pushback.RuleGate`)
    spec = get_session(session_id).rules[rule_index]
    outcome = _sync_rule(session_id, rule_index, rule, retries, limited)
    outcome.key, outcome.target = spec.key, spec.target.text
    image_events(session_id, [*outcome.images, *outcome.referrers] or _rule_failure(outcome))
    others = [f"prune {p.target} ({p.reason})" for p in outcome.pruned if p.action == "failed"]
    return outcome_state(
        rule, [*outcome.images, *outcome.referrers], outcome.error, outcome, others=others
    )


def _rule_failure(outcome: RuleOutcome) -> list[ImageResult]:
    """A rule that failed before its images were known, as one failed result (for events)."""
    if outcome.error is None:
        return []
    failure = ImageResult(
        rule=outcome.rule,
        source=outcome.key,
        target=outcome.target,
        status=ImageStatus.FAILED,
        reason=outcome.error,
    )
    return [failure]


def _sync_rule(
    session_id: str, rule_index: int, rule: str, retries: int, limited: bool
) -> RuleOutcome:
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
    session = get_session(session_id)
    results, plans = _sort_inspections(session, check.found)
    session.progress.images_found(len(check.found), done=len(results))
    if plans:
        results.extend(_copy_images(session_id, plans, retries, limited))
    for result in results:
        if result.status.value == "failed":
            logger.error("%s -> %s failed: %s", result.source, result.target, result.reason)
    referrers = referrers_after(session_id, rule_index, results, retries=retries)
    pruned = prune_after(session_id, rule_index, results=[*results, *referrers], retries=retries)
    return RuleOutcome(rule=rule, images=results, referrers=referrers, pruned=pruned)
