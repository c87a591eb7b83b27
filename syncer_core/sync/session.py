"""A sync session: per-registry clients, the blob ledger and the transfer bound of one run.

Tasks receive small serialisable values (references, digests), never
clients; they look the session up by id in this process. Everything a run
shares lives here:

- `ClientPool`: one `RegistryClient` per (registry, credentials), so pings,
  tokens and connections are reused across images and rules;
- `BlobLedger`: which (registry, repository) are known to hold a digest, so
  each blob is handled once per destination repository and later
  repositories on the same registry mount it instead of uploading it again;
- `transfers`: a semaphore of `proc` slots bounding blob transfers in flight
  across the whole run, whatever the number of rules running at once;
- `checks` and `blobs`: the bounded thread pools image checks and blob
  copies run on, shared by every rule of the run.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from syncer_core.config.rules import SyncRule
from syncer_core.platform import PlatformFilter
from syncer_core.reference import Reference
from syncer_core.registry import ClientOptions, RegistryAccess, RegistryClient, RetryPolicy
from syncer_core.sync.progress import RunProgress

__all__ = [
    "AccessLookup",
    "BlobLedger",
    "ClientPool",
    "SyncOptions",
    "SyncSession",
    "close_session",
    "get_session",
    "register_session",
]

AccessLookup = Callable[[Reference], RegistryAccess]


@dataclass(frozen=True)
class SyncOptions:
    """Run-wide behaviour.

    Attributes:
        proc: blob transfers in flight across the run (image-syncer `--proc`).
        force: push manifests even when the destination already has them.
        dry_run: inspect only; copy and push nothing.
        platforms: the `--os` / `--arch` filter.
        check_concurrency: parallel image checks across the whole run.
    """

    proc: int = 5
    force: bool = False
    dry_run: bool = False
    platforms: PlatformFilter = field(default_factory=PlatformFilter)
    check_concurrency: int = 16


class ClientPool:
    """Thread-safe cache of registry clients keyed by registry and credentials."""

    def __init__(
        self,
        access_for: AccessLookup,
        options: ClientOptions | None = None,
        retry: RetryPolicy | None = None,
    ):
        self._access_for = access_for
        self._options = options or ClientOptions()
        self._retry = retry or RetryPolicy()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, RegistryAccess], RegistryClient] = {}
        self._by_repository: dict[str, RegistryClient] = {}

    def for_reference(self, reference: Reference) -> RegistryClient:
        """The client for the registry (and credentials) of `reference`.

        Called per blob and per manifest: the credential lookup runs once per
        repository and run, the client is shared per (registry, credentials).
        """
        with self._lock:
            known = self._by_repository.get(reference.name)
        if known is not None:
            return known
        access = self._access_for(reference)
        key = (reference.registry, access)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = RegistryClient(
                    reference.registry, access=access, options=self._options, retry=self._retry
                )
                self._clients[key] = client
            self._by_repository[reference.name] = client
            return client

    def close(self) -> None:
        """Close every client."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            self._by_repository.clear()


class BlobLedger:
    """What this run knows to exist where, who read it there, and a lock per (registry, digest).

    Each record keeps the credentials (`RegistryAccess`) that pushed or saw
    the blob: a mount needs pull on its source repository, which only the
    same credentials are known to have.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._where: dict[tuple[str, str], dict[str, set[RegistryAccess]]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def record(self, registry: str, repository: str, digest: str, access: RegistryAccess) -> None:
        """Remember that `registry/repository` holds `digest`, as seen with `access`."""
        with self._lock:
            readers = self._where.setdefault((registry, digest), {})
            readers.setdefault(repository, set()).add(access)

    def has(self, registry: str, repository: str, digest: str) -> bool:
        """Whether `registry/repository` is known to hold `digest`."""
        with self._lock:
            return repository in self._where.get((registry, digest), {})

    def repositories(self, registry: str, digest: str, access: RegistryAccess) -> list[str]:
        """Repositories of `registry` known to hold `digest` and readable with `access`.

        These are the mount sources for a destination client using `access`.
        """
        with self._lock:
            readers = self._where.get((registry, digest), {})
            return [repo for repo, seen in readers.items() if access in seen]

    @contextmanager
    def exclusive(self, registry: str, digest: str) -> Iterator[None]:
        """Serialise work on one digest per registry, so the second copy can mount."""
        with self._lock:
            lock = self._locks.get((registry, digest))
            if lock is None:
                lock = self._locks[(registry, digest)] = threading.Lock()
        with lock:
            yield


class SyncSession:
    """The shared state of one run in this process."""

    def __init__(
        self,
        access_for: AccessLookup,
        options: SyncOptions | None = None,
        *,
        client_options: ClientOptions | None = None,
        retry: RetryPolicy | None = None,
    ):
        self.options = options or SyncOptions()
        self.access_for = access_for
        self.clients = ClientPool(access_for, client_options, retry)
        #: Rules of the run, addressed by index from the rule flows.
        self.rules: tuple[SyncRule, ...] = ()
        self._listings: dict[str, list[str]] = {}
        self._listing_locks: dict[str, threading.Lock] = {}
        self._listings_lock = threading.Lock()
        self.ledger = BlobLedger()
        #: `--dry-run`: what planned images would have placed (never real content).
        self.planned = BlobLedger()
        #: Counters that progress displays read (images, blobs, bytes in flight).
        self.progress = RunProgress()
        self.transfers = threading.BoundedSemaphore(max(1, self.options.proc))
        # One bounded pool for every check of the run, sized like a client's
        # connection pool: per-batch pools made hundreds of threads convoy on
        # httpcore's pool lock (5,000 tags: 799 threads).
        self.checks = ThreadPoolExecutor(max(1, self.options.check_concurrency))
        # Blob copies of every image of the run. Twice `proc` threads: a copy
        # waiting for another image's upload of the same digest (ledger lock)
        # holds a thread but no transfer slot, so it does not stall the others.
        self.blobs = ThreadPoolExecutor(2 * max(1, self.options.proc))
        self.id = uuid.uuid4().hex

    def client(self, reference: Reference) -> RegistryClient:
        """Shortcut for `self.clients.for_reference(reference)`."""
        return self.clients.for_reference(reference)

    def listing(self, repository: str, fetch: Callable[[], list[str]]) -> list[str]:
        """The tags of a source repository, fetched once per run.

        Rules sharing a source (one repository mirrored to several
        destinations) may run at once: the first fetches under the
        repository's lock, the others wait for its answer. A failed fetch
        is not remembered, so the next rule (or a retry) tries again.
        """
        with self._listings_lock:
            lock = self._listing_locks.setdefault(repository, threading.Lock())
        with lock:
            tags = self._listings.get(repository)
            if tags is None:
                tags = self._listings[repository] = fetch()
            return tags

    def close(self) -> None:
        """Stop the check and blob pools and release connections."""
        self.checks.shutdown(wait=True)
        self.blobs.shutdown(wait=True)
        self.clients.close()


_SESSIONS: dict[str, SyncSession] = {}
_SESSIONS_LOCK = threading.Lock()


def register_session(session: SyncSession) -> str:
    """Make a session reachable by id from tasks running in this process."""
    with _SESSIONS_LOCK:
        _SESSIONS[session.id] = session
    return session.id


def get_session(session_id: str) -> SyncSession:
    """Look a registered session up.

    Raises:
        KeyError: no such session in this process.
    """
    with _SESSIONS_LOCK:
        return _SESSIONS[session_id]


def close_session(session_id: str) -> None:
    """Close and forget a session."""
    with _SESSIONS_LOCK:
        session = _SESSIONS.pop(session_id, None)
    if session is not None:
        session.close()
