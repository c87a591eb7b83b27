"""`--dry-run`: what a real run would do with a changed image, predicted without writing.

A real run decides per blob at copy time (skip → mount → stream, regclient's
order); a dry run has no copies to learn from, so it plays the same decisions
against a ledger of what earlier planned images of the run would have
placed. The prediction is exact for a run whose images are planned in the
order a real run copies them, and names each decision, so a user can see
before the first nightly run how much will move and what will be mounted.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncer_core.plan import SyncJob
from syncer_core.sync.inspect import BlobTransfer, ImagePlan
from syncer_core.sync.results import ImageResult, ImageStatus, human_size, plural
from syncer_core.sync.session import BlobLedger, SyncSession

__all__ = ["BlobForecast", "forecast_blobs", "planned_result", "unique_blobs"]


@dataclass(frozen=True)
class BlobForecast:
    """What a real run would do with each blob of one changed image."""

    copy: tuple[BlobTransfer, ...] = ()
    mount: tuple[BlobTransfer, ...] = ()
    skip: tuple[BlobTransfer, ...] = ()

    @property
    def bytes(self) -> int:
        """Bytes that would be streamed (mounts and skips move none)."""
        return sum(blob.size for blob in self.copy)


def unique_blobs(plan: ImagePlan) -> list[BlobTransfer]:
    """The plan's blobs, once each per destination repository (children may share layers)."""
    unique: dict[tuple[str, str], BlobTransfer] = {}
    for blob in plan.blobs:
        unique.setdefault((blob.target.name, blob.digest), blob)
    return list(unique.values())


def _decide(session: SyncSession, planned: BlobLedger, blob: BlobTransfer) -> str:
    """`skip`, `mount` or `copy`, by `copy_blob`'s rules (mounts: this credential's only)."""
    target, source = blob.target, blob.source
    if planned.has(target.registry, target.repository, blob.digest):
        return "skip"  # an earlier image of this run brings it into the same repository
    access = session.client(target).access
    known = session.ledger.repositories(target.registry, blob.digest, access)
    known += planned.repositories(target.registry, blob.digest, access)
    if any(repo != target.repository for repo in known):
        return "mount"
    same_registry = source.registry == target.registry and source.repository != target.repository
    if same_registry and session.client(source).access == access:
        return "mount"
    return "copy"


def forecast_blobs(session: SyncSession, planned: BlobLedger, plan: ImagePlan) -> BlobForecast:
    """Decide each unique blob as `copy_blob` would, and remember it as placed."""
    decided: dict[str, list[BlobTransfer]] = {"copy": [], "mount": [], "skip": []}
    for blob in unique_blobs(plan):
        decided[_decide(session, planned, blob)].append(blob)
        access = session.client(blob.target).access
        planned.record(blob.target.registry, blob.target.repository, blob.digest, access)
    return BlobForecast(tuple(decided["copy"]), tuple(decided["mount"]), tuple(decided["skip"]))


def _describe(forecast: BlobForecast, plan: ImagePlan) -> str:
    push = f"push {plural(len(plan.children) + 1, 'manifest')}"
    if plan.children:
        push += " (children first, then the index)"
    parts = [
        f"would copy {plural(len(forecast.copy), 'blob')} ({human_size(forecast.bytes)})",
        f"mount {len(forecast.mount)}",
        push,
    ]
    if forecast.skip:
        parts.insert(2, f"reuse {len(forecast.skip)} brought by another image")
    return ", ".join(parts)


def planned_result(session: SyncSession, plan: ImagePlan) -> ImageResult:
    """The `--dry-run` result of a changed image: the forecast, and nothing written."""
    forecast = forecast_blobs(session, session.planned, plan)
    job: SyncJob = plan.job
    return ImageResult(
        rule=job.rule,
        source=str(job.source),
        target=str(job.target),
        status=ImageStatus.PLANNED,
        reason="; ".join([_describe(forecast, plan), *plan.notes]),
        digest=plan.top.manifest.digest,
        blobs_copied=len(forecast.copy),
        blobs_mounted=len(forecast.mount),
        blobs_skipped=plan.blobs_present + len(forecast.skip),
        manifests_pushed=len(plan.children) + 1,
        bytes=forecast.bytes,
    )
