"""Watch a registry while a sync runs: every tag must always be fully retrievable.

A background thread sweeps the given repositories over and over: list the
tags, GET each tag's manifest, then recursively GET every child manifest of
an index and HEAD every blob (config and layers) a manifest references. A tag
whose manifest or any referenced content cannot be retrieved at that instant
is a *violation*: a client pulling it then would fail. Syncing pushes blobs
first, children next and the tag last, so no sweep may ever find one.

The poller talks to the registry directly (never through a fault proxy), with
request retries disabled so nothing is papered over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from syncer_core.errors import (
    ManifestError,
    NotFoundError,
    RegistryError,
    TransientRegistryError,
)
from syncer_core.manifest import ImageIndex, RawManifest
from syncer_core.registry import RegistryAccess, RegistryClient, RetryPolicy

__all__ = ["TagPoller", "Violation", "check_tags"]


@dataclass(frozen=True)
class Violation:
    """A tag that was not fully retrievable at one instant.

    Attributes:
        repository: the repository.
        tag: the tag.
        problem: what could not be read, e.g. `blob sha256:… missing`.
        at: `time.monotonic()` of the observation.
    """

    repository: str
    tag: str
    problem: str
    at: float


#: How long a listed tag may take to resolve (see `_resolve`).
_PENDING_GRACE = 2.0


@dataclass
class _Sweep:
    tags: int = 0
    objects: int = 0
    pending: int = 0
    violations: list[Violation] = field(default_factory=list)


def _tags(client: RegistryClient, repository: str) -> list[str]:
    try:
        return client.list_tags(repository)
    except NotFoundError:  # the repository does not exist yet
        return []


def _problem(client: RegistryClient, repository: str, manifest: RawManifest, sweep: _Sweep) -> str:
    """Check everything `manifest` references; return the first problem found, or ""."""
    try:
        parsed = manifest.parsed
    except ManifestError as exc:
        return f"manifest {manifest.digest} does not parse: {exc}"
    if isinstance(parsed, ImageIndex):
        for child in parsed.manifests:
            sweep.objects += 1
            try:
                fetched = client.get_manifest(repository, child.digest)
            except NotFoundError:
                return f"child manifest {child.digest} missing"
            problem = _problem(client, repository, fetched, sweep)
            if problem:
                return f"child {child.digest}: {problem}"
        return ""
    for descriptor in parsed.blob_descriptors():
        if descriptor.is_foreign:
            continue
        sweep.objects += 1
        if client.head_blob(repository, descriptor.digest) is None:
            return f"blob {descriptor.digest} missing"
    return ""


def check_tags(client: RegistryClient, repositories: Iterable[str]) -> list[Violation]:
    """One sweep: the tags of `repositories` that are not fully retrievable now."""
    sweep = _Sweep()
    _sweep(client, repositories, sweep)
    return sweep.violations


def _resolve(
    client: RegistryClient, repository: str, tag: str, sweep: _Sweep
) -> RawManifest | None:
    """GET a listed tag's manifest, waiting out distribution's non-atomic tag write.

    distribution 2.8 creates `_manifests/tags/<tag>/` (which `tags/list`
    reads) before it writes `current/link` (which a GET by tag reads), so a
    tag being pushed is listed a moment before it resolves: 404 while the
    link file does not exist yet, and 500 `UNKNOWN` while it exists but is
    still empty (its filesystem driver's `PutContent` opens, truncates, then
    writes in place; distribution 3 writes a temporary file and renames it).
    Until then it is not a tag a client can pull at all, which is not a
    broken one; a listed tag that still does not resolve after
    `_PENDING_GRACE` seconds is.
    """
    deadline = time.monotonic() + _PENDING_GRACE
    while True:
        try:
            return client.get_manifest(repository, tag)
        except NotFoundError:
            if time.monotonic() > deadline:
                return None
        except TransientRegistryError as error:
            if error.status_code != 500 or time.monotonic() > deadline:
                raise
        sweep.pending += 1
        time.sleep(0.05)


def _sweep(client: RegistryClient, repositories: Iterable[str], sweep: _Sweep) -> None:
    for repository in repositories:
        for tag in _tags(client, repository):
            sweep.tags += 1
            manifest = _resolve(client, repository, tag, sweep)
            now = time.monotonic()
            if manifest is None:
                problem = f"tag listed, manifest 404 for {_PENDING_GRACE}s"
                sweep.violations.append(Violation(repository, tag, problem, now))
                continue
            problem = _problem(client, repository, manifest, sweep)
            if problem:
                sweep.violations.append(Violation(repository, tag, problem, now))


class TagPoller:
    """Sweep repositories in a thread until stopped; collect violations.

    Args:
        registry: the registry `host:port` (the real one, not a proxy).
        access: credentials and TLS settings for it.
        repositories: the repositories to watch, or a callable returning them.
        interval: pause between sweeps, in seconds.

    Attributes:
        violations: every violation seen.
        errors: unexpected failures reading the registry (not violations).
        sweeps: completed sweeps.
        max_tags: the most tags one sweep saw.
        objects: manifests and blobs checked, summed over sweeps.
        pending: times a listed tag did not resolve yet and was re-read.
    """

    def __init__(
        self,
        registry: str,
        access: RegistryAccess,
        repositories: Iterable[str] | Callable[[], Iterable[str]],
        *,
        interval: float = 0.02,
    ):
        self._client = RegistryClient(registry, access=access, retry=RetryPolicy(attempts=1))
        self._repositories = repositories
        self.interval = interval
        self.violations: list[Violation] = []
        self.errors: list[str] = []
        self.sweeps = 0
        self.max_tags = 0
        self.objects = 0
        self.pending = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tag-poller", daemon=True)

    def _names(self) -> list[str]:
        source = self._repositories
        return list(source() if callable(source) else source)

    def _run(self) -> None:
        while not self._stop.is_set():
            sweep = _Sweep()
            try:
                _sweep(self._client, self._names(), sweep)
            except RegistryError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.violations.extend(sweep.violations)
            self.sweeps += 1
            self.max_tags = max(self.max_tags, sweep.tags)
            self.objects += sweep.objects
            self.pending += sweep.pending
            self._stop.wait(self.interval)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until a sweep that started after this call has completed."""
        target = self.sweeps + 2  # the sweep in progress may have begun before the call
        deadline = time.monotonic() + timeout
        while self.sweeps < target and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError("the tag poller made no progress")
            time.sleep(0.01)

    def start(self) -> TagPoller:
        """Start sweeping."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the current sweep, stop, and close the client."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self._client.close()

    def __enter__(self) -> TagPoller:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def summary(self) -> str:
        """One line for the test output."""
        return (
            f"{self.sweeps} sweeps, up to {self.max_tags} tags, {self.objects} objects checked, "
            f"{self.pending} re-reads of tags being written, "
            f"{len(self.violations)} violations, {len(self.errors)} read errors"
        )
