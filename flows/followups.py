"""After a rule's images: copy their referrers, then prune the destination.

Each is one Prefect task per rule that asks for it (`referrers <repo>`,
`prune <repo>`), never one per image: a task run costs ~5 ms in the client
and ~30 ms of server CPU, and a nightly re-run of an unchanged rule still
has to look for new signatures and stale tags. A rule that must not prune
(failed, empty, an image failed) gets no task, only a warning and a
`skipped` entry in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State

from flows.states import outcome_state, state_data
from flows.tasks import retry_transient, retrying
from syncer_core.sync.engine import describe_error
from syncer_core.sync.prune import prune_rule, skip_reason
from syncer_core.sync.referrers import copy_referrers, subjects_of
from syncer_core.sync.results import ImageResult, ImageStatus, PruneAction
from syncer_core.sync.session import get_session

__all__ = ["prune_after", "prune_task", "referrers_after", "referrers_task"]


def _data(state: State[Any]) -> Any:
    """What a (possibly Failed) task state carries; the exception that ended it is raised."""
    data = state_data(state)
    if isinstance(data, BaseException):
        raise data
    return data


@task(
    name="referrers",
    task_run_name="referrers {repository}",
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def referrers_task(
    session_id: str, rule_index: int, repository: str, results: list[ImageResult]
) -> State[list[ImageResult]]:
    """Copy the signatures, attestations and SBOMs of the rule's images, after them.

    Args:
        session_id: the run's session in this process.
        rule_index: which rule of the session.
        repository: the destination repository (for the UI).
        results: the rule's image results: the copied and unchanged ones are the subjects.
    """
    session = get_session(session_id)
    copied = copy_referrers(session, session.rules[rule_index], results)
    logger = get_run_logger()
    for result in copied:
        if result.status.value == "failed":
            logger.error("referrer %s failed: %s", result.target, result.reason)
        elif result.status.value != "skipped":
            logger.info("referrer %s %s: %s", result.target, result.status.value, result.reason)
    return outcome_state(repository, copied, None, copied, verb="referrers failed")


def referrers_after(
    session_id: str, rule_index: int, results: Sequence[ImageResult], *, retries: int = 0
) -> list[ImageResult]:
    """Copy the referrers of the rule's images when it asks to (one task per such rule)."""
    rule = get_session(session_id).rules[rule_index]
    if not rule.referrers or not subjects_of(results):
        return []
    repository = rule.target.repository.name
    try:
        state = retrying(referrers_task, retries)(
            session_id, rule_index, repository, list(results), return_state=True
        )
        copied: list[ImageResult] = _data(state)
        return copied
    except Exception as failure:  # noqa: BLE001 - the images are fine; report the referrers
        reason = describe_error(failure)
        get_run_logger().error("referrers of %s failed: %s", repository, reason)
        return [
            ImageResult(
                rule=rule.name,
                source=rule.source.repository.name,
                target=repository,
                status=ImageStatus.FAILED,
                reason=f"referrers: {reason}",
            )
        ]


@task(
    name="prune",
    task_run_name="prune {repository}",
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def prune_task(
    session_id: str, rule_index: int, repository: str, results: list[ImageResult]
) -> State[list[PruneAction]]:
    """Delete (dry-run: list) the rule's destination tags that left its selection.

    Args:
        session_id: the run's session in this process.
        rule_index: which rule of the session.
        repository: the destination repository (for the UI).
        results: the rule's image results: their targets are the selection.
    """
    session = get_session(session_id)
    actions = prune_rule(session, session.rules[rule_index], results)
    logger = get_run_logger()
    for action in actions:
        level = "error" if action.action == "failed" else "info"
        getattr(logger, level)(
            "prune %s: %s (%s) %s", action.action, action.target, action.digest, action.reason
        )
    failed = [f"prune {a.target} failed ({a.reason})" for a in actions if a.action == "failed"]
    return outcome_state(repository, [], None, actions, others=failed)


def prune_after(
    session_id: str,
    rule_index: int,
    *,
    error: str | None = None,
    results: Sequence[ImageResult] = (),
    retries: int = 0,
) -> list[PruneAction]:
    """Prune after the rule, if it asks to and it is safe; else say why not.

    Returns:
        The actions (empty when the rule does not prune).
    """
    rule = get_session(session_id).rules[rule_index]
    if not rule.prune:
        return []
    repository = rule.target.repository.name
    reason = skip_reason(error, results)
    if reason is not None:
        get_run_logger().warning("prune of %s skipped: %s", repository, reason)
        return [PruneAction(rule=rule.name, target=repository, action="skipped", reason=reason)]
    try:
        state = retrying(prune_task, retries)(
            session_id, rule_index, repository, list(results), return_state=True
        )
        actions: list[PruneAction] = _data(state)
        return actions
    except Exception as failure:  # noqa: BLE001 - listing/reading failed: reported, rule goes on
        reason = describe_error(failure)
        get_run_logger().error("prune of %s failed: %s", repository, reason)
        return [PruneAction(rule=rule.name, target=repository, action="failed", reason=reason)]
