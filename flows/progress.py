"""Show a run's progress: a live display on a terminal, log lines elsewhere, a Prefect artifact.

An 800 MiB image used to copy in silence. Now, while rules run:
- on a terminal (stderr is a TTY), one live `rich` display: images done of
  those found, blobs, bytes, the rate, and the largest transfers in flight;
  Prefect's console log lines print above it instead of through it;
- without one (CI, workers, `| tee`), a log line every `interval` seconds
  (10 by default) for each blob still streaming, so a long copy is never
  silent for more than that (the copy task logs when each image starts and
  ends);
- in Prefect, a progress artifact `image-sync-progress` on the run, updated
  at most every 2 s as images finish.

All of it reads `RunProgress.snapshot()` from one thread: no registry
request, no work on the copy path. `IMAGE_SYNCER_PROGRESS=off|lines|live`
overrides the choice; `IMAGE_SYNCER_PROGRESS_INTERVAL` sets the line interval.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging.handlers import PrefectConsoleHandler
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from syncer_core.sync.progress import BlobProgress, ProgressSnapshot, RunProgress
from syncer_core.sync.results import human_size

__all__ = ["ARTIFACT_KEY", "progress_mode", "render", "report_progress", "summary_line"]

ARTIFACT_KEY = "image-sync-progress"
#: Seconds between artifact updates (each is one API call).
_ARTIFACT_EVERY = 2.0
#: Transfers shown in the live display.
_SHOWN = 3


def progress_mode() -> str:
    """`live` on a terminal, `lines` otherwise, unless `IMAGE_SYNCER_PROGRESS` says."""
    chosen = os.environ.get("IMAGE_SYNCER_PROGRESS", "").strip().lower()
    if chosen in ("off", "lines", "live"):
        return chosen
    return "live" if sys.stderr.isatty() else "lines"


def _interval() -> float:
    try:
        return max(0.2, float(os.environ.get("IMAGE_SYNCER_PROGRESS_INTERVAL", "10")))
    except ValueError:
        return 10.0


def summary_line(snap: ProgressSnapshot) -> str:
    """`images 3/60 · blobs 12/241 · 24.0 MiB of 380.0 MiB · 80.0 MiB/s · 4 s`."""
    return (
        f"images {snap.images_done}/{snap.images_total} · blobs {snap.blobs_done}/"
        f"{snap.blobs_total} · {human_size(snap.bytes_done)} of {human_size(snap.bytes_total)}"
        f" · {human_size(int(snap.rate))}/s · {snap.seconds:.0f} s"
    )


def blob_line(blob: BlobProgress) -> str:
    """`sha256:0123456789ab… -> reg/repo:tag 1.2 GiB of 4.0 GiB (30%) at 85.0 MiB/s`."""
    percent = f" ({100 * blob.done / blob.size:.0f}%)" if blob.size else ""
    return (
        f"{blob.digest[:19]}… -> {blob.target} {human_size(blob.done)} of "
        f"{human_size(blob.size)}{percent} at {human_size(int(blob.rate))}/s"
    )


def render(snap: ProgressSnapshot) -> Group:
    """The live display: the summary line, then the largest transfers with a bar each."""
    table = Table.grid(padding=(0, 1))
    for blob in snap.in_flight[:_SHOWN]:
        bar = ProgressBar(total=max(blob.size, 1), completed=min(blob.done, blob.size), width=24)
        table.add_row(bar, Text(blob_line(blob)))
    return Group(Text(summary_line(snap), style="bold"), table)


class _Reporter:
    """The one thread that shows progress in the chosen form until stopped."""

    def __init__(self, progress: RunProgress, logger: Any, mode: str, artifact: UUID | None):
        self.progress = progress
        self.logger = logger
        self.mode = mode
        self.artifact = artifact
        self.interval = _interval()
        self._stop = threading.Event()
        self._last_percent = -1.0
        # In a copy of the flow's context: the artifact updates go to the API in
        # force there (the CLI's temporary API, a test harness), not to the
        # process-wide settings, where no API may be set at all.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="image-syncer-progress", daemon=True
        )

    def start(self) -> _Reporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._update_artifact(self.progress.snapshot(), final=True)

    def _run(self) -> None:
        if self.mode == "live":
            self._run_live()
            return
        next_artifact = time.monotonic() + _ARTIFACT_EVERY
        next_lines = time.monotonic() + self.interval
        while not self._stop.wait(min(_ARTIFACT_EVERY, self.interval)):
            now, snap = time.monotonic(), self.progress.snapshot()
            if now >= next_lines:
                next_lines = now + self.interval
                for blob in snap.in_flight:
                    self.logger.info("streaming %s", blob_line(blob))
            if now >= next_artifact:
                next_artifact = now + _ARTIFACT_EVERY
                self._update_artifact(snap)

    def _run_live(self) -> None:
        console = Console(file=sys.stderr)
        first = render(self.progress.snapshot())
        with (
            Live(first, console=console, refresh_per_second=4) as live,
            _console_logs_through(console),
        ):
            last = time.monotonic()
            while not self._stop.wait(0.25):
                snap = self.progress.snapshot()
                live.update(render(snap))
                if time.monotonic() - last >= _ARTIFACT_EVERY:
                    last = time.monotonic()
                    self._update_artifact(snap)
            live.update(render(self.progress.snapshot()))

    def _update_artifact(self, snap: ProgressSnapshot, final: bool = False) -> None:
        percent = 100.0 if final and snap.images_done >= snap.images_total else snap.percent
        if self.artifact is None or (percent == self._last_percent and not final):
            return
        self._last_percent = percent
        with suppress(Exception):  # progress is best effort; the run goes on without it
            update_progress_artifact(self.artifact, percent, description=summary_line(snap))


@contextmanager
def _console_logs_through(console: Console) -> Iterator[None]:
    """Print Prefect's console log lines through `console`, above the live display."""
    handlers = [
        h
        for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs")
        for h in logging.getLogger(name).handlers
        if isinstance(h, PrefectConsoleHandler)
    ]
    saved = [(h, h.console) for h in handlers]
    for handler in handlers:
        handler.console = console
    try:
        yield
    finally:
        for handler, original in saved:
            handler.console = original


@contextmanager
def report_progress(progress: RunProgress, logger: Any) -> Iterator[None]:
    """Show the run's progress while the block runs (in the calling flow run's context)."""
    mode = progress_mode()
    if mode == "off":
        yield
        return
    artifact: UUID | None = None
    with suppress(Exception):  # no API to write to: the display and lines still work
        created = create_progress_artifact(
            0.0, key=ARTIFACT_KEY, description="image-syncer: checking rules"
        )
        artifact = created if isinstance(created, UUID) else None
    reporter = _Reporter(progress, logger, mode, artifact).start()
    try:
        yield
    finally:
        reporter.stop()
