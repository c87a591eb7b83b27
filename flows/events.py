"""One Prefect event per image outcome, posted in batches from one background thread.

Automations and notifications react to events, so every image a run handles
becomes one: `image-syncer.image.synced`, `.skipped` or `.failed`, about the
resource `image-syncer.image.<destination reference>` (labelled with its
source, digest and rule), related to the rule's and the run's flow runs (and
the deployment, if any), with bytes, blob counts and the reason as payload.
A rule that failed before its images were known is one `failed` event about
its destination.

Cost is the design constraint: a nightly no-op of thousands of tags emits
thousands of events. Prefect's `emit_event` builds and validates an `Event`
on the calling thread (~0.23 ms each measured here: 1.2 s for 5,000 tags,
on the rule's own thread). Here a rule only queues its results;
one sender thread posts them to the API's batch endpoint (`POST /events`,
up to `BATCH` per request): synced and failed images while the run goes on,
skipped ones (the bulk of a no-op, and ~1.3 ms of server CPU each) once it
has ended; the process waits for the last batches before it exits. A
failing events API is logged once and never fails a run.
`IMAGE_SYNCER_EVENTS=off` turns them off (for a server that should not
store an event per image).
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.events.worker import should_emit_events

from syncer_core.sync.results import ImageResult, ImageStatus

__all__ = [
    "EVENT_PREFIX",
    "ImageEventSender",
    "drain_image_events",
    "image_events",
    "open_image_events",
]

EVENT_PREFIX = "image-syncer.image"
#: Events per request: well under the API's body limits, few requests per run.
BATCH = 500
_STOP = object()
_SENDERS: dict[str, ImageEventSender] = {}
#: Senders of ended runs that may still be sending (see `drain_image_events`).
_FINISHING: list[ImageEventSender] = []
_SENDERS_LOCK = threading.Lock()
log = logging.getLogger("image_syncer.events")


def _run_resource(context: FlowRunContext | None, role: str) -> list[dict[str, str]]:
    """The flow run of `context` (and its deployment, if any) as related resources."""
    if context is None or context.flow_run is None:
        return []
    run = context.flow_run
    related = [
        {
            "prefect.resource.id": f"prefect.flow-run.{run.id}",
            "prefect.resource.role": role,
            "prefect.resource.name": run.name,
        }
    ]
    if run.deployment_id is not None:
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                "prefect.resource.role": "deployment",
            }
        )
    return related


def image_event(result: ImageResult, related: list[dict[str, str]]) -> dict[str, Any]:
    """The event of one image outcome, as the JSON the events API takes."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": f"{EVENT_PREFIX}.{result.status.value}",
        "resource": {
            "prefect.resource.id": f"{EVENT_PREFIX}.{result.target}",
            "prefect.resource.name": result.target,
            "image-syncer.source": result.source,
            "image-syncer.digest": result.digest or "",
            "image-syncer.rule": result.rule,
        },
        "related": related,
        "payload": {
            "reason": result.reason,
            "bytes": result.bytes,
            "blobs_copied": result.blobs_copied,
            "blobs_mounted": result.blobs_mounted,
            "blobs_skipped": result.blobs_skipped,
            "manifests_pushed": result.manifests_pushed,
            "seconds": round(result.seconds, 3),
        },
    }


class ImageEventSender:
    """A queue of image outcomes and the one thread that posts them as events in batches.

    Args:
        related: resources every event relates to (the run's flow run, its deployment).
        batch: events per request at most.
        linger: how long the sender waits for more events before posting a short batch.
    """

    def __init__(
        self, related: list[dict[str, str]], batch: int = BATCH, linger: float = 0.05
    ) -> None:
        self._related = related
        self._batch = batch
        self._linger = linger
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._deferred: list[tuple[ImageResult, list[dict[str, str]]]] = []
        self._warned = False
        #: Events and requests that went through (for tests and diagnostics).
        self.sent = 0
        self.batches = 0
        # The thread runs in a copy of the creator's context: the Prefect settings
        # in force there (a temporary API, a test harness) are the ones it posts to.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="image-syncer-events", daemon=True
        )
        self._thread.start()

    def add(self, results: Sequence[ImageResult], related: list[dict[str, str]]) -> None:
        """Queue synced and failed images now; keep skipped ones for `finish` (plans: none).

        Only a tuple per image on the caller's thread: the events are built by
        the sender. Skipped images are most of a no-op run and the server
        spends ~1.3 ms of CPU on each event (measured: 5,000 skipped tags,
        +6.3 s of API CPU, +3.4 s in-flow when sent during the run), so their
        events wait until the run is over.
        """
        for result in results:
            if result.status == ImageStatus.SKIPPED:
                with self._lock:
                    self._deferred.append((result, related))
            elif result.status != ImageStatus.PLANNED:
                self._queue.put((result, related))

    def finish(self) -> None:
        """No more events: the thread sends the skipped images' too, then ends by itself."""
        with self._lock:
            deferred, self._deferred = self._deferred, []
        for item in deferred:
            self._queue.put(item)
        self._queue.put(_STOP)

    def join(self, timeout: float) -> bool:
        """Wait at most `timeout` for the queued events to be sent; True when they were."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        with get_client(sync_client=True) as client:
            stopping = False
            while not stopping:
                batch, stopping = self._take()
                if batch:
                    self._post(client, batch)

    def _take(self) -> tuple[list[dict[str, Any]], bool]:
        """Block for one outcome, then take what follows within `linger`, up to a batch."""
        item = self._queue.get()
        batch: list[dict[str, Any]] = []
        while item is not _STOP:
            result, related = item
            unique = {r["prefect.resource.id"]: r for r in (*related, *self._related)}
            batch.append(image_event(result, list(unique.values())))
            if len(batch) >= self._batch:
                return batch, False
            try:
                item = self._queue.get(timeout=self._linger)
            except queue.Empty:
                return batch, False
        return batch, True

    def _post(self, client: Any, batch: list[dict[str, Any]]) -> None:
        try:
            client.request("POST", "/events", json=batch).raise_for_status()
            self.sent += len(batch)
            self.batches += 1
        except Exception as error:  # noqa: BLE001 - events are best effort, the run goes on
            if not self._warned:
                log.warning("could not send image events to the Prefect API: %s", error)
                self._warned = True


@contextmanager
def open_image_events(session_id: str) -> Iterator[ImageEventSender | None]:
    """A sender for the run with this session, which sends synced and failed images at once.

    The run does not wait for the rest: `drain_image_events`, after the run
    (the CLI before it exits, or at interpreter exit), sends the skipped
    images' events and waits for the last batches.
    """
    if not should_emit_events() or os.environ.get("IMAGE_SYNCER_EVENTS", "").lower() == "off":
        yield None
        return
    sender = ImageEventSender(_run_resource(FlowRunContext.get(), "run"))
    with _SENDERS_LOCK:
        _SENDERS[session_id] = sender
        _FINISHING.append(sender)
    try:
        yield sender
    finally:
        with _SENDERS_LOCK:
            _SENDERS.pop(session_id, None)


def drain_image_events(timeout: float = 60.0) -> int:
    """Wait until every finished run's events are sent; returns how many senders did not finish.

    Called by the CLI before it exits, and at interpreter exit for flow runs
    that a worker started in their own process.
    """
    deadline = time.monotonic() + timeout
    with _SENDERS_LOCK:
        pending = [s for s in _FINISHING if s not in _SENDERS.values()]
    for sender in pending:
        sender.finish()
    left = 0
    for sender in pending:
        if sender.join(max(0.0, deadline - time.monotonic())):
            with _SENDERS_LOCK, suppress(ValueError):
                _FINISHING.remove(sender)
        else:
            left += 1
    return left


atexit.register(drain_image_events)


def image_events(session_id: str, results: Sequence[ImageResult]) -> None:
    """Queue the events of `results`, related to the current (rule) flow run."""
    with _SENDERS_LOCK:
        sender = _SENDERS.get(session_id)
    if sender is not None:
        sender.add(results, _run_resource(FlowRunContext.get(), "flow-run"))
