"""Final Prefect states that tell the truth about images, rules and runs.

A mirroring job's operators watch Prefect: the UI's colours, automations on
`prefect.flow-run.Failed`, notifications. So a copy task whose image failed
ends Failed with the reason as its message; a check task ends Failed when one
of its images failed; a rule's flow run ends Failed when any of its images or
its listing failed; the run ends Failed when anything failed. Each Failed
state still carries its data (the check, the rule's outcome, the report), so
the caller reads the same result either way and a failed run publishes
everything a good one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from syncer_core.sync.engine import describe_error
from syncer_core.sync.results import ImageResult, ImageStatus, SyncReport, failure_message, plural

__all__ = ["error_state", "outcome_state", "run_state", "state_data"]

T = TypeVar("T")


def outcome_state(
    rule: str,
    results: Sequence[Any],
    error: str | None,
    data: T,
    verb: str = "failed",
    others: Sequence[str] = (),
) -> State[T]:
    """Failed when the rule's own step or any of its images failed, else Completed.

    Args:
        rule: the rule's name.
        results: what the rule found or did per image (only failed
            `ImageResult`s count; plans and unchanged images do not).
        error: why the whole rule failed (its listing, say), or None.
        data: what the state carries for the caller.
        verb: how the message says it, e.g. `failed the check`.
        others: other failures of the rule, one line each (a prune deletion, say).
    """
    if error is not None:
        return Failed(message=f"rule {rule} failed: {error}", data=data)
    failed = [r for r in results if isinstance(r, ImageResult) and r.status == ImageStatus.FAILED]
    if failed:
        head = f"{len(failed)} of {plural(len(results), 'image')} {verb}"
        message = failure_message(failed, {}, head)
        return Failed(message="; ".join([message, *others]), data=data)
    if others:
        return Failed(message="; ".join(others), data=data)
    return Completed(data=data)


def error_state(error: BaseException) -> State[BaseException]:
    """A Failed state whose message is the error's one-line reason.

    The error is the state's data, so a retry condition can still tell a
    transient error from a final one.
    """
    return Failed(message=describe_error(error), data=error)


def run_state(report: SyncReport) -> State[SyncReport]:
    """Failed with `k of n images failed in m rules: ...` when anything failed."""
    message = report.failure_message()
    if message is None:
        return Completed(data=report, message=report.summary())
    return Failed(message=message, data=report)


def state_data(state: State[Any]) -> Any:
    """The data a final state carries: our result, or the exception that ended it."""
    return state.result(raise_on_failure=False)
