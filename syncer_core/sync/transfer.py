"""Moving content: one blob (skip → mount → stream) and one manifest push.

Blob order after regclient's `BlobCopy`: a blob this run already placed in
the destination repository is skipped; one known in another repository of the
destination registry (or in the source repository when source and destination
share a registry) is mounted; anything else is streamed GET → PUT with the
digest verified on the fly. The whole blob copy is the unit of retry.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from syncer_core.registry import MountResult, RegistryClient
from syncer_core.sync.inspect import BlobTransfer, ManifestPush
from syncer_core.sync.results import BlobOutcome
from syncer_core.sync.session import SyncSession

__all__ = ["copy_blob", "push_manifest"]


def _mount_candidates(
    session: SyncSession, transfer: BlobTransfer, dst: RegistryClient
) -> list[str]:
    """Repositories to mount from: only those read with the destination's own credentials.

    A mount needs pull on its source repository; a repository another
    credential placed or read is no such promise (distribution: 401).
    """
    target = transfer.target
    candidates = [
        repo
        for repo in session.ledger.repositories(target.registry, transfer.digest, dst.access)
        if repo != target.repository
    ]
    source = transfer.source
    same_registry = source.registry == target.registry and source.repository != target.repository
    if same_registry and session.client(source).access == dst.access:
        candidates.append(source.repository)
    return candidates


def _try_mount(dst: RegistryClient, transfer: BlobTransfer, candidates: list[str]) -> MountResult:
    """Mount from the first candidate that works; keep a 202's session for the upload."""
    result = MountResult(mounted=False)
    for repository in candidates[:3]:
        if result.upload_url is not None:
            dst.cancel_upload(result.upload_url)
        result = dst.mount_blob(transfer.target.repository, transfer.digest, repository)
        if result.mounted:
            break
    return result


def copy_blob(
    session: SyncSession,
    transfer: BlobTransfer,
    slot: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> BlobOutcome:
    """Make `transfer.digest` present in the destination repository.

    Takes the digest's ledger lock first: a second image needing the same
    blob waits there, then skips it from the ledger without taking anything
    else. Only a real mount or upload takes one of the run's `proc` transfer
    slots and, inside it, whatever `slot()` guards (the orchestrator's
    cross-machine per-registry limit), so no cluster-wide slot is held while
    queued here.
    """
    target = transfer.target
    ledger = session.ledger
    with ledger.exclusive(target.registry, transfer.digest):
        if ledger.has(target.registry, target.repository, transfer.digest):
            return BlobOutcome(digest=transfer.digest, action="skipped")
        with session.transfers, slot():
            outcome = _mount_or_stream(session, transfer)
        access = session.client(target).access
        ledger.record(target.registry, target.repository, transfer.digest, access)
        return outcome


def _mount_or_stream(session: SyncSession, transfer: BlobTransfer) -> BlobOutcome:
    """Mount from a repository known to hold the blob, else stream it GET → PUT."""
    target = transfer.target
    dst = session.client(target)
    mount = _try_mount(dst, transfer, _mount_candidates(session, transfer, dst))
    if mount.mounted:
        return BlobOutcome(digest=transfer.digest, action="mounted")
    src = session.client(transfer.source)
    pending = mount.upload_url  # a mount's 202 session, until push_blob takes it over
    try:
        with src.open_blob(transfer.source.repository, transfer.digest) as stream:
            size = transfer.size or stream.size
            upload_url, pending = pending, None  # push_blob cancels it on its own failures
            chunks = session.progress.track(
                transfer.digest, str(target), size or 0, stream.iter_chunks()
            )
            # Pipeline: resuming source → progress count → resuming upload;
            # after a cut upload, `rewind` re-reads the source from the offset
            # the destination confirmed (progress counts at most the blob's size).
            dst.push_blob(
                target.repository,
                transfer.digest,
                chunks,
                size=size,
                upload_url=upload_url,
                rewind=stream.rewind,
            )
    except BaseException:
        if pending is not None:
            dst.cancel_upload(pending)  # the source failed before the upload began
        raise
    return BlobOutcome(digest=transfer.digest, action="copied", bytes=size or 0)


def push_manifest(session: SyncSession, push: ManifestPush) -> str:
    """Push one manifest's exact bytes under its tag or digest; returns the digest."""
    dst = session.client(push.target)
    return dst.put_manifest(push.target.repository, push.target.identifier, push.manifest)
