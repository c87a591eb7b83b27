"""Compose inspect → blobs → manifests into image results, without any orchestrator.

`flows/` runs the same stages as Prefect tasks; this module is the plain
Python composition (used by the tests of the engine, and by anyone embedding
`syncer_core` without Prefect) and holds the result-building helpers both share.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from syncer_core.errors import SyncerError
from syncer_core.plan import SyncJob
from syncer_core.sync.dryrun import planned_result, unique_blobs
from syncer_core.sync.inspect import BlobTransfer, ImagePlan, Unchanged, inspect_job
from syncer_core.sync.results import BlobOutcome, ImageResult, ImageStatus
from syncer_core.sync.session import SyncSession
from syncer_core.sync.transfer import copy_blob, push_manifest

__all__ = [
    "describe_error",
    "execute_plan",
    "failed_result",
    "run_jobs",
    "synced_result",
    "unchanged_result",
]


def describe_error(error: BaseException) -> str:
    """A one-line reason naming the error kind, for reports and logs."""
    text = str(error).strip().replace("\n", " ")
    kind = type(error).__name__
    return f"{kind}: {text}" if text else kind


def _result(job: SyncJob, status: ImageStatus, **fields: Any) -> ImageResult:
    """An image's result: which job (rule, source, target), what happened, and details."""
    return ImageResult(
        rule=job.rule, source=str(job.source), target=str(job.target), status=status, **fields
    )


def unchanged_result(unchanged: Unchanged, seconds: float = 0.0) -> ImageResult:
    """Result of a job with nothing to do."""
    return _result(
        unchanged.job,
        ImageStatus.SKIPPED,
        reason=unchanged.reason,
        digest=unchanged.digest,
        seconds=seconds,
    )


def failed_result(job: SyncJob, error: BaseException | str, seconds: float = 0.0) -> ImageResult:
    """Result of a job that failed, with its reason."""
    reason = error if isinstance(error, str) else describe_error(error)
    return _result(job, ImageStatus.FAILED, reason=reason, seconds=seconds)


def synced_result(
    plan: ImagePlan, outcomes: Iterable[BlobOutcome], manifests_pushed: int, seconds: float
) -> ImageResult:
    """Result of a job whose blobs and manifests are all in place."""
    outcomes = list(outcomes)
    return _result(
        plan.job,
        ImageStatus.SYNCED,
        reason="; ".join(plan.notes),
        digest=plan.top.manifest.digest,
        blobs_copied=sum(1 for o in outcomes if o.action == "copied"),
        blobs_mounted=sum(1 for o in outcomes if o.action == "mounted"),
        blobs_skipped=plan.blobs_present + sum(1 for o in outcomes if o.action == "skipped"),
        manifests_pushed=manifests_pushed,
        bytes=sum(o.bytes for o in outcomes),
        seconds=seconds,
    )


def execute_plan(
    session: SyncSession,
    plan: ImagePlan,
    slot: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> ImageResult:
    """Bring one changed image over: its blobs concurrently, then children, then the tag.

    Blobs go to the session's blob pool (bounded by `proc` transfers across
    the run; the ledger makes a blob shared with another image of the run
    a skip or a mount). Each copy runs in a copy of the caller's context, so
    an orchestrator's `slot` works from the pool's threads. Every blob is
    waited for before anything is pushed, and the first failure is raised:
    a manifest is pushed only when everything it references is present.
    """
    started = time.monotonic()
    blobs = unique_blobs(plan)
    session.progress.blobs_planned((b.target.name, b.digest, b.size) for b in blobs)
    futures = []
    for blob in blobs:
        future = session.blobs.submit(
            contextvars.copy_context().run, copy_blob, session, blob, slot
        )
        future.add_done_callback(functools.partial(_blob_placed, session, blob))
        futures.append(future)
    wait(futures)
    outcomes: list[BlobOutcome] = [future.result() for future in futures]
    for child in plan.children:
        push_manifest(session, child)
    push_manifest(session, plan.top)
    pushed = len(plan.children) + 1
    return synced_result(plan, outcomes, pushed, time.monotonic() - started)


def _blob_placed(session: SyncSession, blob: BlobTransfer, future: Future[BlobOutcome]) -> None:
    if future.exception() is None:
        session.progress.blob_done(blob.target.name, blob.digest)


def _sync_one(session: SyncSession, job: SyncJob) -> ImageResult:
    try:
        return _inspect_and_copy(session, job)
    finally:
        session.progress.image_done()


def _inspect_and_copy(session: SyncSession, job: SyncJob) -> ImageResult:
    started = time.monotonic()
    try:
        found = inspect_job(session, job)
        if isinstance(found, Unchanged):
            return unchanged_result(found, time.monotonic() - started)
        if session.options.dry_run:
            return planned_result(session, found)
        return execute_plan(session, found)
    except SyncerError as error:
        return failed_result(job, error, time.monotonic() - started)


def run_jobs(session: SyncSession, jobs: Sequence[SyncJob]) -> list[ImageResult]:
    """Sync every job; a failing image never stops the others."""
    session.progress.images_found(len(jobs), 0)
    with ThreadPoolExecutor(max(1, session.options.proc)) as images:
        return list(images.map(lambda job: _sync_one(session, job), jobs))
