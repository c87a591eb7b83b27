"""Thin Prefect tasks over `syncer_core`: list tags, check images, copy blobs, push manifests.

Each task turns small values into one core call. Task runs exist only where
work happens (a task run costs ~5 ms in the client and ~30 ms of server CPU):
tag listings, one batched check per group of images, one run per blob
actually copied or mounted, one per manifest actually pushed. Clients and
the blob ledger are looked up from the session id, never passed in.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run as runtime_task_run

from flows.limits import registry_slot
from syncer_core.errors import TransientRegistryError
from syncer_core.plan import SyncJob
from syncer_core.reference import Reference
from syncer_core.sync.engine import failed_result
from syncer_core.sync.inspect import BlobTransfer, ImagePlan, ManifestPush, Unchanged, inspect_job
from syncer_core.sync.results import BlobOutcome, ImageResult
from syncer_core.sync.session import get_session
from syncer_core.sync.transfer import copy_blob, push_manifest

__all__ = [
    "check_images_task",
    "copy_blob_task",
    "list_tags_task",
    "push_manifest_task",
    "retry_transient",
]

Inspection = Unchanged | ImagePlan | ImageResult


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what may succeed next time: 5xx, timeouts, resets, 429.

    401/403/404, rejected manifests and digest mismatches fail at once.
    """
    return isinstance(state.result(raise_on_failure=False), TransientRegistryError)


def _short(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}…"


def _blob_run_name() -> str:
    transfer: BlobTransfer = runtime_task_run.parameters["transfer"]
    return f"copy {_short(transfer.digest)} → {transfer.target.name}"


def _manifest_run_name() -> str:
    push: ManifestPush = runtime_task_run.parameters["push"]
    target = push.target
    shown = target.tag if target.tag else _short(push.manifest.digest)
    return f"push {target.name}:{shown}" if target.tag else f"push {target.name}@{shown}"


@task(
    name="list-tags",
    task_run_name="list tags of {repository}",
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def list_tags_task(session_id: str, repository: str) -> list[str]:
    """List the tags of a source repository (`registry/path`)."""
    session = get_session(session_id)
    reference = Reference.parse(repository)
    return session.client(reference).list_tags(reference.repository)


@task(
    name="check-images",
    task_run_name="check {label}",
    cache_policy=NO_CACHE,
)
def check_images_task(
    session_id: str, jobs: list[SyncJob], label: str, retries: int = 0
) -> list[Inspection]:
    """HEAD-compare a batch of images concurrently; plan the changed ones.

    A job that fails to inspect becomes a failed `ImageResult`: one broken
    image never fails the batch. A transient failure (5xx, timeout, 429)
    instead fails the task while Prefect retries remain, so the batch is
    checked again like any other transfer; the last attempt reports it.
    """
    session = get_session(session_id)
    transient: list[TransientRegistryError] = []

    def inspect(job: SyncJob) -> Inspection:
        try:
            return inspect_job(session, job)
        except TransientRegistryError as error:
            transient.append(error)
            return failed_result(job, error)
        except Exception as error:  # noqa: BLE001 - reported per image with its cause
            return failed_result(job, error)

    results = list(session.checks.map(inspect, jobs))
    if transient and runtime_task_run.run_count <= retries:
        raise transient[0]
    return results


@task(
    name="copy-blob",
    task_run_name=_blob_run_name,
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def copy_blob_task(
    session_id: str, transfer: BlobTransfer, limit: str | None = None
) -> BlobOutcome:
    """Skip, mount or stream one blob into its destination repository.

    Args:
        session_id: the run's session in this process.
        transfer: what to copy where.
        limit: a global concurrency limit to hold a slot of while copying
            (`registry:<host>`), or None.
    """
    return copy_blob(get_session(session_id), transfer, slot=lambda: registry_slot(limit))


@task(
    name="push-manifest",
    task_run_name=_manifest_run_name,
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def push_manifest_task(session_id: str, push: ManifestPush) -> str:
    """Push one manifest's exact bytes (children by digest, the tag last)."""
    return push_manifest(get_session(session_id), push)
