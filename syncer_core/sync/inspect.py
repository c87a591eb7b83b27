"""Inspect one job: is the destination already up to date, and if not, what must move?

The cheap path comes first: HEAD the source and destination manifests and
compare `Docker-Content-Digest` (a HEAD does not count against Docker Hub's
pull quota). Only a changed image is fetched (by digest, so a tag moving
mid-run cannot mix two versions) and turned into an `ImagePlan`: the blobs
missing at the destination and the manifests to push, children first and
the tagged manifest last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from syncer_core.errors import DigestMismatchError, ManifestError, NotFoundError, SyncerError
from syncer_core.manifest import ImageIndex, ImageManifest, Platform, RawManifest, Schema1Manifest
from syncer_core.mediatypes import INDEX_TYPES
from syncer_core.plan import SyncJob
from syncer_core.platform import PlatformFilter, filter_index
from syncer_core.reference import Reference
from syncer_core.registry import RegistryClient
from syncer_core.sync.session import SyncSession

__all__ = ["BlobTransfer", "ImagePlan", "ManifestPush", "Unchanged", "inspect_job"]

_MAX_CONFIG_BYTES = 4 * 1024 * 1024
_MAX_DEPTH = 4


@dataclass(frozen=True)
class BlobTransfer:
    """One blob to bring into a destination repository."""

    source: Reference
    target: Reference
    digest: str
    size: int


@dataclass(frozen=True)
class ManifestPush:
    """One manifest to push, under `target`'s tag or digest."""

    target: Reference
    manifest: RawManifest


@dataclass(frozen=True)
class Unchanged:
    """Nothing to do for this job; `reason` says why."""

    job: SyncJob
    reason: str
    digest: str | None = None


@dataclass
class ImagePlan:
    """Everything one changed image needs, in push order."""

    job: SyncJob
    top: ManifestPush
    children: list[ManifestPush] = field(default_factory=list)
    blobs: list[BlobTransfer] = field(default_factory=list)
    blobs_present: int = 0
    notes: list[str] = field(default_factory=list)


class _Inspector:
    def __init__(self, session: SyncSession, job: SyncJob, platforms: PlatformFilter | None):
        self.session = session
        self.job = job
        self.src = session.client(job.source)
        self.dst = session.client(job.target)
        self.force = session.options.force
        self.platforms = session.options.platforms if platforms is None else platforms
        # Index completeness per digest, and children seen present, so that
        # an incomplete index is read and its children HEADed only once.
        self._complete: dict[str, bool] = {}
        self._present_children: set[str] = set()

    def run(self) -> Unchanged | ImagePlan:
        job = self.job
        dst_head = None
        if not self.force:
            dst_head = self.dst.head_manifest(job.target.repository, job.target.identifier)
        if dst_head is None:
            # Nothing to compare with: fetch the source at once (one request fewer).
            return self._plan(
                self.src.get_manifest(job.source.repository, job.source.identifier), None
            )
        src_head = self.src.head_manifest(job.source.repository, job.source.identifier)
        if src_head is None:
            raise NotFoundError(
                f"source manifest {job.source} not found", registry=job.source.registry
            )
        if (
            src_head.digest
            and dst_head.digest == src_head.digest
            and self._complete_at_destination(src_head.digest, dst_head.media_type)
        ):
            return Unchanged(job, "unchanged", src_head.digest)
        source = self.src.get_manifest(
            job.source.repository, src_head.digest or job.source.identifier
        )
        return self._plan(source, dst_head.digest)

    def _complete_at_destination(self, digest: str, media_type: str | None) -> bool:
        """For an index, every child must exist at the destination too.

        A single image is complete by construction: registries accept a
        manifest only when its blobs are present, and we push it after them.
        """
        if media_type and media_type not in INDEX_TYPES:
            return True
        if digest not in self._complete:
            self._complete[digest] = self._children_present(digest)
        return self._complete[digest]

    def _children_present(self, digest: str) -> bool:
        index = self.dst.get_manifest(self.job.target.repository, digest)
        parsed = index.parsed
        if not isinstance(parsed, ImageIndex):
            return True
        repo = self.job.target.repository
        for child in parsed.manifests:
            if self.dst.head_manifest(repo, child.digest) is None:
                return False
            self._present_children.add(child.digest)
        return True

    def _plan(self, source: RawManifest, dst_digest: str | None) -> Unchanged | ImagePlan:
        job = self.job
        notes: list[str] = []
        top = self._apply_filter(source, notes)
        if isinstance(top, Unchanged):
            return top
        if job.target.digest is not None and not top.matches(job.target.digest):
            if top.digest != source.digest:
                raise SyncerError(
                    "the platform filter rewrites the index, so it cannot be pushed under "
                    f"the pinned digest {job.target.digest}"
                )
            raise DigestMismatchError(
                job.target.digest, top.digest, what=f"destination {job.target}"
            )
        # Also catches registries that omit Docker-Content-Digest on HEAD, and
        # filtered indexes, whose digest differs from the source's.
        if (
            not self.force
            and dst_digest == top.digest
            and self._complete_at_destination(top.digest, top.media_type)
        ):
            return Unchanged(job, "unchanged", top.digest)
        plan = ImagePlan(job, ManifestPush(job.target, top), notes=notes)
        seen: set[str] = set()
        self._collect(top, plan, seen, depth=0)
        return plan

    def _apply_filter(self, source: RawManifest, notes: list[str]) -> RawManifest | Unchanged:
        """The manifest to push under the platform filter, or why nothing is pushed."""
        if not self.platforms.active:
            return source
        if not source.is_index:
            if self._single_matches(source):
                return source
            return Unchanged(self.job, f"platform does not match the filter ({self.platforms})")
        filtered = filter_index(source, self.platforms)
        if filtered is None:
            return Unchanged(self.job, f"no platform matches the filter ({self.platforms})")
        if filtered.digest != source.digest:
            notes.append(f"index rewritten for {self.platforms}: digest {filtered.digest}")
        return filtered

    def _collect(self, manifest: RawManifest, plan: ImagePlan, seen: set[str], depth: int) -> None:
        parsed = manifest.parsed
        if isinstance(parsed, ImageIndex):
            if depth >= _MAX_DEPTH:
                raise ManifestError(f"indexes nested deeper than {_MAX_DEPTH} levels")
            for descriptor in parsed.manifests:
                self._collect_child(descriptor.digest, plan, seen, depth)
        else:
            self._collect_blobs(parsed, plan, seen)

    def _collect_child(self, digest: str, plan: ImagePlan, seen: set[str], depth: int) -> None:
        if digest in seen:
            return
        seen.add(digest)
        target = self.job.target.with_digest(digest)
        if not self.force and (
            digest in self._present_children
            or self.dst.head_manifest(target.repository, digest) is not None
        ):
            return  # child already complete at the destination (it was pushed after its blobs)
        child = self.src.get_manifest(self.job.source.repository, digest)
        self._collect(child, plan, seen, depth + 1)
        plan.children.append(ManifestPush(target, child))

    def _collect_blobs(
        self, parsed: ImageManifest | Schema1Manifest | ImageIndex, plan: ImagePlan, seen: set[str]
    ) -> None:
        assert not isinstance(parsed, ImageIndex)
        for descriptor in parsed.blob_descriptors():
            if descriptor.digest in seen or descriptor.is_foreign:
                continue
            seen.add(descriptor.digest)
            self._plan_blob(descriptor.digest, descriptor.size, plan)

    def _plan_blob(self, digest: str, size: int, plan: ImagePlan) -> None:
        target = self.job.target
        ledger = self.session.ledger
        if ledger.has(target.registry, target.repository, digest):
            plan.blobs_present += 1
            return
        if self.dst.head_blob(target.repository, digest) is not None:
            ledger.record(target.registry, target.repository, digest, self.dst.access)
            plan.blobs_present += 1
            return
        plan.blobs.append(BlobTransfer(self.job.source, target, digest, size))

    def _single_matches(self, manifest: RawManifest) -> bool:
        """Filter a single image by its config's os/architecture (read only now)."""
        parsed = manifest.parsed
        if isinstance(parsed, Schema1Manifest):
            return self.platforms.matches(Platform(os="linux", architecture=parsed.architecture))
        assert isinstance(parsed, ImageManifest)
        if parsed.config is None:
            return False
        return self.platforms.matches(
            _read_config_platform(self.src, self.job, parsed.config.digest)
        )


def _read_config_platform(client: RegistryClient, job: SyncJob, digest: str) -> Platform | None:
    data = bytearray()
    with client.open_blob(job.source.repository, digest) as stream:
        for chunk in stream.iter_chunks():
            data.extend(chunk)
            if len(data) > _MAX_CONFIG_BYTES:
                raise ManifestError(f"config blob {digest} larger than {_MAX_CONFIG_BYTES} bytes")
    try:
        doc = json.loads(data)
        return Platform(
            os=str(doc.get("os", "")),
            architecture=str(doc.get("architecture", "")),
            variant=doc.get("variant"),
            **{"os.version": doc.get("os.version")},
        )
    except (ValueError, AttributeError, TypeError):
        return None


def inspect_job(
    session: SyncSession, job: SyncJob, platforms: PlatformFilter | None = None
) -> Unchanged | ImagePlan:
    """Decide what one job needs.

    `platforms` replaces the run's `--os`/`--arch` filter (referrers pass an
    empty one: a signature has no platform and must never be filtered out).

    Returns:
        `Unchanged` when the destination is up to date (or nothing matches the
        platform filter), else an `ImagePlan`.

    Raises:
        SyncerError: any failure; the caller records it against this image only.
    """
    return _Inspector(session, job, platforms).run()
