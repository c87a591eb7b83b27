"""One rule of the images file as one Prefect flow run.

list tags (task, if the rule needs a listing) → plan jobs (pure) → batched
unchanged checks (tasks) → one task per blob to copy or mount → one task per
manifest to push, children before their index and the tag last. A failing
image never stops the others; its result carries the reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefect import flow, get_run_logger, unmapped
from prefect.futures import PrefectFuture, wait
from pydantic import BaseModel, Field

from flows.limits import registry_limit_name
from flows.tasks import check_images_task, copy_blob_task, list_tags_task, push_manifest_task
from syncer_core.plan import SyncJob, plan_rule
from syncer_core.sync.engine import (
    describe_error,
    failed_result,
    planned_result,
    synced_result,
    unchanged_result,
)
from syncer_core.sync.inspect import BlobTransfer, ImagePlan, Unchanged
from syncer_core.sync.results import BlobOutcome, ImageResult
from syncer_core.sync.session import SyncSession, get_session

__all__ = ["RuleOutcome", "sync_rule"]

#: Images per batched check task: few task runs, enough parallel HEADs.
CHECK_BATCH = 50


class RuleOutcome(BaseModel):
    """What one rule did: its images, or why the whole rule failed."""

    rule: str
    images: list[ImageResult] = Field(default_factory=list)
    error: str | None = None


def _retrying(task_obj, retries: int):  # type: ignore[no-untyped-def]
    """Prefect retries with exponential backoff and jitter (transient errors only)."""
    delays = [min(60.0, 2.0 * 2**i) for i in range(max(0, retries))]
    return task_obj.with_options(
        retries=retries, retry_delay_seconds=delays or 0, retry_jitter_factor=0.5
    )


def _list_tags(session: SyncSession, session_id: str, repository: str, retries: int) -> list[str]:
    cached = session.cached_tags(repository)
    if cached is not None:
        return cached
    tags: list[str] = _retrying(list_tags_task, retries).submit(session_id, repository).result()
    session.remember_tags(repository, tags)
    return tags


def _batches(jobs: Sequence[SyncJob], size: int) -> list[list[SyncJob]]:
    return [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]


def _check(
    session_id: str, jobs: Sequence[SyncJob], retries: int
) -> list[Unchanged | ImagePlan | ImageResult]:
    batches = _batches(jobs, CHECK_BATCH)
    labels = [f"{len(b)} images from {b[0].source.name}" for b in batches]
    checker = _retrying(check_images_task, retries)
    futures = checker.map(unmapped(session_id), batches, labels, unmapped(retries))
    return [item for future in futures for item in future.result()]


def _finish_image(
    session_id: str,
    plan: ImagePlan,
    blob_futures: dict[tuple[str, str], PrefectFuture[BlobOutcome]],
    retries: int,
    started: float,
) -> ImageResult:
    """Wait for an image's blobs, then push its manifests: children, then the tag."""
    outcomes: list[BlobOutcome] = []
    try:
        for blob in plan.blobs:
            outcomes.append(blob_futures[(blob.target.name, blob.digest)].result())
        push = _retrying(push_manifest_task, retries)
        children = [push.submit(session_id, child) for child in plan.children]
        for child in children:
            child.result()
        push.submit(session_id, plan.top).result()
    except Exception as error:  # noqa: BLE001 - reported per image with its cause
        return failed_result(plan.job, error, time.monotonic() - started)
    pushed = len(plan.children) + 1
    return synced_result(plan, outcomes, pushed, time.monotonic() - started)


def _copy_blobs(
    session_id: str, plans: Sequence[ImagePlan], retries: int, limited: bool
) -> dict[tuple[str, str], PrefectFuture[BlobOutcome]]:
    """One task per distinct (destination repository, digest) across the rule's images."""
    unique: dict[tuple[str, str], BlobTransfer] = {}
    for plan in plans:
        for blob in plan.blobs:
            unique.setdefault((blob.target.name, blob.digest), blob)
    if not unique:
        return {}
    transfers = list(unique.values())
    limits = [registry_limit_name(t.target.registry) if limited else None for t in transfers]
    futures = _retrying(copy_blob_task, retries).map(unmapped(session_id), transfers, limits)
    return dict(zip(unique.keys(), futures, strict=True))


def _sort_inspections(
    found: Sequence[Unchanged | ImagePlan | ImageResult], dry_run: bool
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
    session = get_session(session_id)
    spec = session.rules[rule_index]
    started = time.monotonic()
    listings: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    if spec.source.needs_listing:
        name = spec.source.repository.name
        try:
            listings[name] = _list_tags(session, session_id, name, retries)
        except Exception as error:  # noqa: BLE001 - fails this rule only
            errors[name] = describe_error(error)
    planned = plan_rule(spec, listings, lookup=session.access_for, listing_errors=errors)
    for warning in planned.warnings:
        logger.warning("%s: %s", rule, warning)
    if planned.error is not None:
        logger.error("rule %s failed: %s", rule, planned.error)
        return RuleOutcome(rule=rule, error=planned.error)
    if not planned.jobs:
        logger.info("rule %s: nothing matched", rule)
        return RuleOutcome(rule=rule)
    results, plans = _sort_inspections(
        _check(session_id, planned.jobs, retries), session.options.dry_run
    )
    if plans:
        blob_futures = _copy_blobs(session_id, plans, retries, limited)
        results.extend(_finish_image(session_id, p, blob_futures, retries, started) for p in plans)
        wait(list(blob_futures.values()))
    for result in results:
        if result.status.value == "failed":
            logger.error("%s -> %s failed: %s", result.source, result.target, result.reason)
    return RuleOutcome(rule=rule, images=results)
