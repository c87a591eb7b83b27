"""Referrers follow their images: signatures, attestations and SBOMs of what a rule copied.

For every manifest digest a rule copied or found unchanged (the children of
an index included), what refers to it comes along:

- from the OCI 1.1 referrers API when the source answers it, else from the
  referrers tag schema's `sha256-<hex>` index;
- cosign's `sha256-<hex>.sig`, `.att` and `.sbom` tags;
- each referrer is an ordinary job (HEAD first, so an unchanged one costs
  one HEAD; blobs, then children, then the manifest; exact bytes), run
  after its subject and never filtered by `--os`/`--arch`;
- at a destination without the referrers API, the `sha256-<hex>` fallback
  index is maintained: the source's own bytes when the destination has
  none, else the destination's index plus the missing descriptors.

Discovery reads the source's tag list (listed once per run), so an image
without signatures costs no request at all on a registry without the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from syncer_core import mediatypes as mt
from syncer_core.config.rules import SyncRule
from syncer_core.errors import SyncerError
from syncer_core.manifest import Descriptor, ImageIndex, RawManifest
from syncer_core.plan import SyncJob
from syncer_core.platform import PlatformFilter
from syncer_core.reference import Reference
from syncer_core.referrertags import COSIGN_SUFFIXES, fallback_tag, referrer_subject
from syncer_core.registry.referrers import get_referrers
from syncer_core.sync.dryrun import planned_result
from syncer_core.sync.engine import execute_plan, failed_result, unchanged_result
from syncer_core.sync.inspect import Unchanged, inspect_job
from syncer_core.sync.results import ImageResult, ImageStatus
from syncer_core.sync.session import SyncSession

__all__ = ["copy_referrers", "subjects_of"]

_NO_FILTER = PlatformFilter()
_COPIED = (ImageStatus.SYNCED, ImageStatus.SKIPPED, ImageStatus.PLANNED)


def subjects_of(results: Iterable[ImageResult]) -> list[tuple[str, str]]:
    """`(source reference, digest)` of each image a rule copied or found unchanged."""
    return [(r.source, r.digest) for r in results if r.status in _COPIED and r.digest]


@dataclass
class _Follower:
    """One rule's referrer copy: source and destination repositories, and what was learnt."""

    session: SyncSession
    rule: SyncRule
    tags: set[str]  # the source repository's tags
    source_api: bool | None = None
    dest_api: bool | None = None
    results: list[ImageResult] = field(default_factory=list)
    _answers: dict[str, ImageIndex] = field(default_factory=dict)

    @property
    def src(self) -> Reference:
        return self.rule.source.repository

    @property
    def dst(self) -> Reference:
        return self.rule.target.repository

    def probe(self, digest: str) -> None:
        """Learn once whether the source answers the referrers API (its answer is kept)."""
        client = self.session.client(self.src)
        found = get_referrers(client, self.src.repository, digest)
        self.source_api = found is not None
        if found is not None:
            self._answers[digest] = found

    def subjects(self, digest: str, tops: set[str]) -> list[str]:
        """The digest, and its children when it is an index whose children may have referrers.

        Without the API only subjects named by the tag list can have any: when
        those are all top-level images, no index is read.
        """
        named = {found[0] for found in map(referrer_subject, self.tags) if found}
        if not self.source_api and not (named - tops):
            return [digest]
        try:
            manifest = self.session.client(self.src).get_manifest(self.src.repository, digest)
            parsed = manifest.parsed
        except SyncerError:
            return [digest]  # e.g. a platform-filtered index: not in the source
        children = [c.digest for c in parsed.manifests] if isinstance(parsed, ImageIndex) else []
        return [digest, *children]

    def descriptors(self, subject: str) -> tuple[list[Descriptor], Reference | None]:
        """Referrers of `subject` by API or tag schema, and the schema's index tag if used."""
        client = self.session.client(self.src)
        if self.source_api:
            found = self._answers.pop(subject, None)
            if found is None:
                found = get_referrers(client, self.src.repository, subject)
            return (list(found.manifests) if found else []), None
        tag = fallback_tag(subject)
        if tag not in self.tags:
            return [], None
        index = client.get_manifest(self.src.repository, tag).parsed
        if not isinstance(index, ImageIndex):
            return [], None
        return list(index.manifests), self.src.with_tag(tag)

    def copy(self, source: Reference, target: Reference, note: str) -> None:
        """One referrer (or fallback index) as an ordinary job; its result is recorded."""
        job = SyncJob(source=source, target=target, rule=self.rule.name)
        try:
            found = inspect_job(self.session, job, platforms=_NO_FILTER)
            if isinstance(found, Unchanged):
                result = unchanged_result(found)
            elif self.session.options.dry_run:
                result = planned_result(self.session, found)
            else:
                result = execute_plan(self.session, found)
        except SyncerError as error:
            result = failed_result(job, error)
        self.results.append(result.model_copy(update={"reason": _join(note, result.reason)}))

    def follow(self, subject: str) -> None:
        """Copy every referrer of one subject, then its fallback index where needed."""
        hexpart = fallback_tag(subject)
        descriptors, schema_index = self.descriptors(subject)
        for descriptor in descriptors:
            self.copy(
                self.src.with_digest(descriptor.digest),
                self.dst.with_digest(descriptor.digest),
                f"referrer of {subject} ({descriptor.artifact_type or descriptor.media_type})",
            )
        for suffix in COSIGN_SUFFIXES:
            if hexpart + suffix in self.tags:
                self.copy(
                    self.src.with_tag(hexpart + suffix),
                    self.dst.with_tag(hexpart + suffix),
                    f"cosign {suffix[1:]} of {subject}",
                )
        if descriptors and not self._destination_has_api(subject):
            self.maintain_fallback(subject, descriptors, schema_index)

    def _destination_has_api(self, subject: str) -> bool:
        if self.dest_api is None:
            client = self.session.client(self.dst)
            self.dest_api = get_referrers(client, self.dst.repository, subject) is not None
        return self.dest_api

    def maintain_fallback(
        self, subject: str, wanted: list[Descriptor], schema_index: Reference | None
    ) -> None:
        """Keep the destination's `sha256-<hex>` index listing every referrer of `subject`."""
        tag = fallback_tag(subject)
        target = self.dst.with_tag(tag)
        client = self.session.client(self.dst)
        present = client.head_manifest(self.dst.repository, tag)
        if present is None and schema_index is not None:
            self.copy(schema_index, target, f"referrers index of {subject}")
            return
        existing: list[Descriptor] = []
        if present is not None:
            index = client.get_manifest(self.dst.repository, tag).parsed
            existing = list(index.manifests) if isinstance(index, ImageIndex) else []
        known = {d.digest for d in existing}
        missing = [d for d in wanted if d.digest not in known]
        job = SyncJob(source=target, target=target, rule=self.rule.name)
        if not missing:
            note = f"referrers index of {subject}: unchanged"
            digest = present.digest if present is not None else None
            self.results.append(unchanged_result(Unchanged(job, note, digest)))
            return
        self._push_index(target, [*existing, *missing], subject)

    def _push_index(self, target: Reference, entries: list[Descriptor], subject: str) -> None:
        job = SyncJob(source=target, target=target, rule=self.rule.name)
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [d.model_dump(by_alias=True, exclude_none=True) for d in entries],
        }
        manifest = RawManifest(mt.OCI_INDEX, json.dumps(doc, indent=2).encode())
        note = f"referrers index of {subject}: {len(entries)} entries"
        if self.session.options.dry_run:
            status = ImageStatus.PLANNED
        else:
            try:
                client = self.session.client(target)
                client.put_manifest(target.repository, target.tag or "", manifest)
                status = ImageStatus.SYNCED
            except SyncerError as error:
                self.results.append(failed_result(job, error))
                return
        self.results.append(
            unchanged_result(Unchanged(job, note, manifest.digest)).model_copy(
                update={"status": status, "manifests_pushed": int(status == ImageStatus.SYNCED)}
            )
        )


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p and p != "unchanged") or "unchanged"


def copy_referrers(
    session: SyncSession, rule: SyncRule, results: Sequence[ImageResult]
) -> list[ImageResult]:
    """Copy the referrers of every image of `results` that the rule copied or kept.

    Raises:
        SyncerError: the source tag list could not be read (nothing copied).
    """
    subjects = subjects_of(results)
    if not subjects:
        return []
    repository = rule.source.repository
    client = session.client(repository)
    tags = session.listing(repository.name, lambda: client.list_tags(repository.repository))
    follower = _Follower(session, rule, set(tags))
    follower.probe(subjects[0][1])
    tops = {digest for _, digest in subjects}
    done: set[str] = set()
    for _, digest in subjects:
        for subject in follower.subjects(digest, tops):
            if subject not in done:
                done.add(subject)
                _follow_one(follower, rule, subject)
    return follower.results


def _follow_one(follower: _Follower, rule: SyncRule, subject: str) -> None:
    """Follow one subject; a subject whose referrers cannot be read fails alone."""
    try:
        follower.follow(subject)
    except SyncerError as error:
        job = SyncJob(source=rule.source.repository, target=rule.target.repository, rule=rule.name)
        failed = failed_result(job, error)
        follower.results.append(
            failed.model_copy(update={"reason": f"referrers of {subject}: {failed.reason}"})
        )
