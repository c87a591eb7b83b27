"""Safe pruning: delete destination tags of a rule that left the rule's selection.

Safety first, because a deletion cannot be undone:

- a rule whose source listing failed, whose selection is empty, or with any
  failed image does not prune (`skip_reason`); pruning rules that share a
  destination repository, rename tags or name digests never load;
- a stale tag is deleted by tag where the registry can; distribution 2.x
  deletes only by digest, which removes every tag of that manifest, so a
  digest is deleted only when no kept tag points to it or to an index that
  contains it; otherwise the stale tag stays, reported `kept`;
- signatures of a pruned image go with it: cosign's `sha256-<hex>.sig|.att|
  .sbom` tags and the referrers tag schema's `sha256-<hex>` index (with the
  manifests it lists) of a pruned digest; referrer tags of kept images are
  never stale;
- with `--dry-run` nothing is deleted: each deletion is `would-delete`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from syncer_core.config.rules import SyncRule
from syncer_core.errors import NotFoundError, SyncerError
from syncer_core.manifest import ImageIndex
from syncer_core.mediatypes import INDEX_TYPES
from syncer_core.reference import Reference
from syncer_core.referrertags import referrer_subject
from syncer_core.registry import ManifestHead, RegistryClient
from syncer_core.registry.deletion import delete_manifest, delete_tag
from syncer_core.sync.engine import describe_error
from syncer_core.sync.results import ImageResult, ImageStatus, PruneAction, plural
from syncer_core.sync.session import SyncSession

__all__ = ["prune_rule", "skip_reason"]


def skip_reason(error: str | None, results: Sequence[ImageResult]) -> str | None:
    """Why a rule must not prune this time, or None when it may."""
    if error is not None:
        return f"the rule failed ({error})"
    if not results:
        return "the selection is empty"
    failed = sum(1 for r in results if r.status == ImageStatus.FAILED)
    if failed:
        return f"{plural(failed, 'image')} of the rule failed"
    return None


@dataclass
class _Pruner:
    """The state of one rule's pruning: what the destination holds and what must stay."""

    session: SyncSession
    rule: SyncRule
    client: RegistryClient
    digests: dict[str, str]  # destination tag -> digest
    keep: set[str]
    indexes: set[str]  # destination tags whose manifest is (or may be) an index
    actions: list[PruneAction] = field(default_factory=list)
    tag_delete: bool | None = None  # learnt on the first delete
    gone: set[str] = field(default_factory=set)  # tags already removed

    @property
    def repository(self) -> str:
        return self.rule.target.repository.repository

    def _act(self, tag: str | None, action: str, digest: str | None, reason: str) -> None:
        repository = self.rule.target.repository
        target = repository.with_tag(tag) if tag is not None else repository.with_digest(digest)
        self.actions.append(
            PruneAction(
                rule=self.rule.name, target=str(target), action=action, digest=digest, reason=reason
            )
        )

    def protected(self) -> dict[str, str]:
        """Digest -> the kept tag that needs it (directly, or as a child of its index)."""
        needed: dict[str, str] = {}
        for tag in sorted(self.keep):
            digest = self.digests.get(tag)
            if digest is None or digest in needed:
                continue
            needed[digest] = tag
            if tag not in self.indexes:
                continue
            manifest = self.client.get_manifest(self.repository, digest)
            if isinstance(manifest.parsed, ImageIndex):
                for child in manifest.parsed.manifests:
                    needed.setdefault(child.digest, tag)
        return needed

    def delete(self, tag: str, protected: dict[str, str], why: str) -> str | None:
        """Delete one tag; returns the digest whose manifest went with it, if any."""
        digest = self.digests[tag]
        if tag in self.gone:
            return None
        if self.session.options.dry_run:
            self._act(tag, "would-delete", digest, why)
            self.gone.add(tag)
            return None if digest in protected else digest
        try:
            return self._delete(tag, digest, protected, why)
        except SyncerError as error:
            self._act(tag, "failed", digest, describe_error(error))
            return None

    def _delete(self, tag: str, digest: str, protected: dict[str, str], why: str) -> str | None:
        if self.tag_delete is not False:
            self.tag_delete = delete_tag(self.client, self.repository, tag)
            if self.tag_delete:
                self.gone.add(tag)
                self._act(tag, "deleted", digest, f"{why}; tag deleted")
                return None
        if digest in protected:
            reason = (
                f"{why}, but the registry deletes only by digest and "
                f"kept tag {protected[digest]!r} needs {digest}"
            )
            self._act(tag, "kept", digest, reason)
            return None
        delete_manifest(self.client, self.repository, digest)
        with_it = sorted(t for t, d in self.digests.items() if d == digest and t not in self.gone)
        for other in with_it:
            self.gone.add(other)
            note = "" if other == tag else f" (same manifest as {tag!r})"
            self._act(other, "deleted", digest, f"{why}; manifest deleted by digest{note}")
        return digest

    def prune_referrers(self, pruned: set[str], protected: dict[str, str]) -> None:
        """Delete the referrer tags (and fallback-index entries) of pruned digests."""
        for tag in sorted(self.digests):
            found = referrer_subject(tag)
            if found is None or found[0] not in pruned or tag in self.gone:
                continue
            subject, suffix = found
            if suffix == "" and not self.session.options.dry_run:
                self._delete_listed(self.digests[tag], protected)
            self.delete(tag, protected, f"referrer of pruned {subject}")

    def _delete_listed(self, index_digest: str, protected: dict[str, str], depth: int = 0) -> None:
        """The manifests a pruned subject's fallback index lists go first (they are untagged).

        A listed index (an attestation index) takes the manifests it holds along.
        """
        try:
            index = self.client.get_manifest(self.repository, index_digest).parsed
        except SyncerError as error:
            # Unread, its manifests cannot be found again once the tag is gone: say so.
            self._act(None, "failed", index_digest, f"reading it: {describe_error(error)}")
            return
        if not isinstance(index, ImageIndex):
            return
        tagged = set(self.digests.values())
        for entry in index.manifests:
            if entry.digest in protected or entry.digest in tagged:
                continue
            try:
                if depth < 2 and entry.media_type in INDEX_TYPES:
                    self._delete_listed(entry.digest, protected, depth + 1)
                delete_manifest(self.client, self.repository, entry.digest)
            except SyncerError as error:
                self._act(None, "failed", entry.digest, describe_error(error))


def _destination_tags(client: RegistryClient, repository: str) -> list[str]:
    """The destination repository's tags (none when it does not exist yet)."""
    try:
        return client.list_tags(repository)
    except NotFoundError:
        return []


def _heads(
    session: SyncSession, client: RegistryClient, repository: str, tags: Sequence[str]
) -> dict[str, ManifestHead]:
    """`tag -> HEAD` of `tags` (on the session's check pool); tags without a digest left out."""

    def head(tag: str) -> tuple[str, ManifestHead | None]:
        return tag, client.head_manifest(repository, tag)

    return {tag: h for tag, h in session.checks.map(head, tags) if h is not None and h.digest}


def _selection(results: Sequence[ImageResult]) -> set[str]:
    tags = {Reference.parse(r.target).tag for r in results}
    return {tag for tag in tags if tag is not None}


def prune_rule(
    session: SyncSession, rule: SyncRule, results: Sequence[ImageResult]
) -> list[PruneAction]:
    """Delete (or, dry-run, list) the destination tags of `rule` not in its selection.

    Call only when `skip_reason` is None. A failing deletion is that tag's
    `failed` action; the others go on.

    Raises:
        SyncerError: the destination could not be listed or read (nothing deleted).
    """
    client = session.client(rule.target.repository)
    repository = rule.target.repository.repository
    tags = _destination_tags(client, repository)
    keep = _selection(results)
    # Decided by name first: a nightly run with nothing stale costs one tag listing,
    # not a HEAD per destination tag.
    if not {t for t in tags if referrer_subject(t) is None} - keep:
        return []
    heads = _heads(session, client, repository, tags)
    digests = {tag: head.digest for tag, head in heads.items() if head.digest}
    images = {t for t in digests if referrer_subject(t) is None}
    stale = sorted(images - keep)
    if not stale:
        return []
    indexes = {t for t, h in heads.items() if not h.media_type or h.media_type in INDEX_TYPES}
    pruner = _Pruner(session, rule, client, digests, keep & images, indexes)
    protected = pruner.protected()
    pruned = set()
    for tag in stale:
        digest = pruner.delete(tag, protected, "not in the rule's selection any more")
        if digest is not None:
            pruned.add(digest)
    remaining = {d for t, d in digests.items() if t not in pruner.gone}
    pruned |= {digests[t] for t in stale if t in pruner.gone and digests[t] not in remaining}
    pruner.prune_referrers(pruned - set(protected), protected)
    return pruner.actions
