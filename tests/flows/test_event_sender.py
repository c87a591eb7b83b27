"""The image-event sender against the session's Prefect API: batches, the off switch, failures."""

from __future__ import annotations

import logging
import time

import pytest

from flows.events import ImageEventSender, open_image_events
from syncer_core.sync.results import ImageResult, ImageStatus

pytestmark = pytest.mark.flow


def _results(count: int, status: ImageStatus = ImageStatus.SKIPPED) -> list[ImageResult]:
    return [
        ImageResult(
            rule="r -> d",
            source=f"127.0.0.1:1/team/app:v{i}",
            target=f"127.0.0.1:2/m/app:v{i}",
            status=status,
            digest="sha256:" + "0" * 64,
        )
        for i in range(count)
    ]


def _stored(name_prefix: str, resource_prefix: str, expected: int) -> int:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(prefix=[name_prefix]),
        resource=EventResourceFilter(id_prefix=[resource_prefix]),
    )
    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline:  # the server persists events in batches
        with get_client(sync_client=True) as client:
            count = client.read_events(filter=event_filter, limit=50).total
        if count >= expected:
            break
        time.sleep(0.5)
    return count


def test_events_are_posted_in_batches_and_all_arrive(prefect_api: None):
    sender = ImageEventSender([], batch=100)
    results = _results(250)
    marker = f"127.0.0.1:2/m/app:v{time.monotonic_ns()}"
    results = [r.model_copy(update={"target": f"{marker}-{i}"}) for i, r in enumerate(results)]
    sender.add(results, [])
    sender.add(_results(3, ImageStatus.PLANNED), [])  # dry-run plans are not events
    sender.finish()

    assert sender.join(60)
    assert sender.sent == 250
    assert sender.batches == 3  # 100 + 100 + 50: batches, not a request per event
    assert _stored("image-syncer.image.skipped", f"image-syncer.image.{marker}", 250) == 250


def test_events_can_be_turned_off(prefect_api: None, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IMAGE_SYNCER_EVENTS", "off")
    with open_image_events("session-off") as sender:
        assert sender is None
    monkeypatch.delenv("IMAGE_SYNCER_EVENTS")
    with open_image_events("session-on") as sender:
        assert isinstance(sender, ImageEventSender)


def test_an_unreachable_events_api_is_logged_once_and_never_raises(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.support.registry_server import free_port

    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        sender = ImageEventSender([], batch=2, linger=0.0)
    caplog.set_level(logging.WARNING, logger="image_syncer.events")
    sender.add(_results(5, ImageStatus.FAILED), [])
    sender.finish()

    assert sender.join(60)
    assert sender.sent == 0
    warnings = [r for r in caplog.records if "could not send image events" in r.getMessage()]
    assert len(warnings) == 1


def test_skipped_images_wait_for_the_end_of_the_run_the_others_go_at_once(prefect_api: None):
    sender = ImageEventSender([], linger=0.0)
    sender.add(_results(20, ImageStatus.SKIPPED), [])
    sender.add(_results(2, ImageStatus.FAILED), [])
    deadline = time.monotonic() + 30
    while sender.sent < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # a skipped event posted during the run would show up by now

    assert sender.sent == 2
    sender.finish()
    assert sender.join(60)
    assert sender.sent == 22
