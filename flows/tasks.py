"""Thin Prefect tasks over `syncer_core`: check a rule, copy an image.

Task runs exist only where work happens (each costs ~5 ms in the client and
~30 ms of server CPU, and on a SQLite-backed API every write also queues
behind the others): one check per rule (tag listing and HEAD comparison of
all its images, usually the whole job of a nightly re-run) and one copy per
changed image (its missing blobs concurrently, then its manifests, the tag
last). Blob-level progress is in the image's result, not in task runs.
Clients, pools and the blob ledger are looked up from the session id, never
passed in.
"""

from __future__ import annotations

import functools
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import task_run as runtime_task_run

from flows.limits import registry_slot
from flows.states import error_state, outcome_state
from syncer_core.errors import SyncerError, TransientRegistryError
from syncer_core.sync.check import RuleCheck, check_rule
from syncer_core.sync.dryrun import unique_blobs
from syncer_core.sync.engine import execute_plan
from syncer_core.sync.inspect import ImagePlan
from syncer_core.sync.results import ImageResult, human_size, plural
from syncer_core.sync.session import get_session

__all__ = ["check_rule_task", "copy_image_task", "retry_transient", "retrying"]


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what may succeed next time: 5xx, timeouts, resets, 429.

    401/403/404, rejected manifests and digest mismatches fail at once.
    """
    return isinstance(state.result(raise_on_failure=False), TransientRegistryError)


@functools.cache
def retrying(task_obj, retries: int):  # type: ignore[no-untyped-def]
    """Prefect retries with exponential backoff and jitter (transient errors only).

    Cached: the same task copy serves every rule of a run (and every run
    with the same `retries`).
    """
    delays = [min(60.0, 2.0 * 2**i) for i in range(max(0, retries))]
    return task_obj.with_options(
        retries=retries, retry_delay_seconds=delays or 0, retry_jitter_factor=0.5
    )


def _short(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}…"


def _copy_run_name() -> str:
    plan: ImagePlan = runtime_task_run.parameters["plan"]
    target = plan.job.target
    shown = (
        f"{target.name}:{target.tag}"
        if target.tag
        else f"{target.name}@{_short(plan.top.manifest.digest)}"
    )
    return f"copy {shown}"


@task(
    name="check-rule",
    task_run_name="check {rule}",
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def check_rule_task(
    session_id: str, rule_index: int, rule: str, retries: int = 0
) -> State[RuleCheck]:
    """List the rule's source tags and HEAD-compare its images; plan the changed ones.

    A broken image becomes a failed result, so the other images go on; the
    task then ends Failed (naming it) but still carries the whole check. A
    transient failure (5xx, timeout, 429) fails the task while Prefect
    retries remain, so the rule is checked again; the last attempt reports it.

    Args:
        session_id: the run's session in this process.
        rule_index: which rule of the session.
        rule: the rule's name (for the UI).
        retries: the retries this task was given.
    """
    raise_transient = runtime_task_run.run_count <= retries
    check = check_rule(get_session(session_id), rule_index, raise_transient=raise_transient)
    return outcome_state(rule, check.found, check.error, check, verb="failed the check")


@task(
    name="copy-image",
    task_run_name=_copy_run_name,
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def copy_image_task(
    session_id: str, plan: ImagePlan, limit: str | None = None
) -> ImageResult | State[BaseException]:
    """Copy one changed image: missing blobs (skip → mount → stream), children, the tag.

    A registry error ends the task Failed with the error's reason as the
    state's message (the error is its data, so only transient ones are
    retried). A retry starts over cheaply: blobs already placed are skips in
    the ledger.

    Args:
        session_id: the run's session in this process.
        plan: the image's blobs and manifests, from the rule's check.
        limit: a global concurrency limit to hold a slot of per blob copy
            (`registry:<host>`), or None.
    """
    logger = get_run_logger()
    moving = [blob.size for blob in unique_blobs(plan)]
    target = plan.job.target
    logger.info("copying %s: %s, %s", target, plural(len(moving), "blob"), human_size(sum(moving)))
    try:
        result = execute_plan(get_session(session_id), plan, slot=lambda: registry_slot(limit))
    except SyncerError as error:
        return error_state(error)
    rate = human_size(int(result.bytes / max(result.seconds, 1e-3)))
    logger.info(
        "copied %s: %s in %.1f s (%s/s)", target, human_size(result.bytes), result.seconds, rate
    )
    return result
