"""Run progress as data: images and blobs done, bytes streamed, the transfers in flight.

A long copy must not be silent: people watch a terminal, operators watch
Prefect, and both want to know how far a 4 GB layer has got. The engine only
counts (a counting stage around each blob's chunk stream, a few calls per
image); whoever shows progress (`flows/progress.py`: a live display, log
lines, a Prefect progress artifact) reads `snapshot()` on its own schedule.
Counting takes a lock per 1 MiB chunk and adds no request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["BlobProgress", "ProgressSnapshot", "RunProgress"]


@dataclass
class BlobProgress:
    """One blob being streamed: where to, how big, how far."""

    digest: str
    target: str
    size: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Bytes per second since this blob started."""
        return self.done / max(time.monotonic() - self.started, 1e-6)


@dataclass(frozen=True)
class ProgressSnapshot:
    """A consistent copy of the counters at one moment."""

    images_done: int
    images_total: int
    blobs_done: int
    blobs_total: int
    bytes_done: int
    bytes_total: int
    seconds: float
    in_flight: tuple[BlobProgress, ...]

    @property
    def rate(self) -> float:
        """Bytes per second over the run so far."""
        return self.bytes_done / max(self.seconds, 1e-6)

    @property
    def percent(self) -> float:
        """Images done as a percentage of the images known so far (100 when none)."""
        return 100.0 * self.images_done / self.images_total if self.images_total else 100.0


class RunProgress:
    """Thread-safe counters of one run, fed by the engine and the orchestrator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._images_done = self._images_total = 0
        self._blobs_done = self._blobs_total = 0
        self._bytes_done = self._bytes_total = 0
        self._in_flight: dict[int, BlobProgress] = {}
        self._planned: set[tuple[str, str]] = set()
        self._placed: set[tuple[str, str]] = set()

    def images_found(self, total: int, done: int) -> None:
        """A rule's check found `total` images, `done` of them already final (unchanged...)."""
        with self._lock:
            self._images_total += total
            self._images_done += done

    def image_done(self) -> None:
        """One more image is final (synced or failed)."""
        with self._lock:
            self._images_done += 1

    def blobs_planned(self, blobs: Iterable[tuple[str, str, int]]) -> None:
        """An image about to be copied needs these (repository, digest, size) blobs.

        Each (repository, digest) counts once, so a retried copy does not inflate the totals.
        """
        with self._lock:
            for repository, digest, size in blobs:
                if (repository, digest) not in self._planned:
                    self._planned.add((repository, digest))
                    self._blobs_total += 1
                    self._bytes_total += size

    def blob_done(self, repository: str, digest: str) -> None:
        """A planned blob is in place (copied, mounted or skipped), counted once."""
        with self._lock:
            if (repository, digest) not in self._placed:
                self._placed.add((repository, digest))
                self._blobs_done += 1

    def track(
        self, digest: str, target: str, size: int, chunks: Iterable[bytes]
    ) -> Iterator[bytes]:
        """Pass `chunks` through unchanged, counting their bytes (up to `size`) as progress."""
        blob = BlobProgress(digest, target, size)
        key = id(blob)
        with self._lock:
            self._in_flight[key] = blob
        try:
            for chunk in chunks:
                with self._lock:
                    # Capped at the blob's size: bytes re-read after a resumed
                    # upload (the pipeline rewinds the source) are not progress.
                    step = len(chunk) if not size else max(0, min(len(chunk), size - blob.done))
                    blob.done += step
                    self._bytes_done += step
                yield chunk
        finally:
            with self._lock:
                self._in_flight.pop(key, None)

    def snapshot(self) -> ProgressSnapshot:
        """The counters now, with the transfers in flight largest first."""
        with self._lock:
            in_flight = tuple(
                BlobProgress(b.digest, b.target, b.size, b.done, b.started)
                for b in sorted(self._in_flight.values(), key=lambda b: b.size, reverse=True)
            )
            return ProgressSnapshot(
                images_done=self._images_done,
                images_total=self._images_total,
                blobs_done=self._blobs_done,
                blobs_total=self._blobs_total,
                bytes_done=self._bytes_done,
                bytes_total=self._bytes_total,
                seconds=time.monotonic() - self._started,
                in_flight=in_flight,
            )
