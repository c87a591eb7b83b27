"""RateLimitGate: Docker-Hub-style quota headers slow manifest requests down."""

from __future__ import annotations

import httpx
import pytest

from syncer_core.registry.ratelimit import RateLimitGate, parse_ratelimit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100;w=21600", (100, 21600.0)),
        ("0;w=60", (0, 60.0)),
        ("7", (7, None)),
        (" 3 ; w=10 ", (3, 10.0)),
        ("", None),
        (None, None),
        ("x;w=1", None),
        ("5;w=abc", (5, None)),
    ],
)
def test_parse(value, expected):
    assert parse_ratelimit(value) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def gate(clock: Clock, **kwargs) -> RateLimitGate:
    return RateLimitGate(clock=lambda: clock.now, sleep=clock.sleep, **kwargs)


def response(remaining: str | None) -> httpx.Response:
    headers = {"ratelimit-remaining": remaining} if remaining is not None else {}
    return httpx.Response(200, headers=headers)


def test_no_headers_never_waits():
    clock = Clock()
    g = gate(clock)
    g.observe(response(None))
    g.wait()
    assert clock.slept == []


def test_plenty_left_never_waits():
    clock = Clock()
    g = gate(clock)
    g.observe(response("50;w=21600"))
    g.wait()
    assert clock.slept == []


def test_exhausted_window_pauses_until_the_window_passes_capped():
    clock = Clock()
    g = gate(clock, max_pause=60)
    g.observe(response("0;w=30"))
    g.wait()
    assert clock.slept == [30.0]
    g2 = gate(clock, max_pause=60)
    g2.observe(response("0;w=21600"))
    g2.wait()
    assert clock.slept[-1] == 60.0


def test_low_water_spaces_requests_out():
    clock = Clock()
    g = gate(clock, low_water=5, max_spacing=10)
    g.observe(response("4;w=20"))
    g.wait()
    assert clock.slept == [pytest.approx(4.0)]
    g.observe(response("1;w=21600"))
    g.wait()
    assert clock.slept[-1] == pytest.approx(10.0)


def test_low_water_spaces_simultaneous_callers_one_after_another():
    # Threads waiting on one client at the same instant: each reserves its own
    # slot, so they leave one spacing apart, not all together.
    clock = Clock()
    g = RateLimitGate(clock=lambda: clock.now, sleep=clock.slept.append, max_spacing=10)
    g.observe(response("3;w=20"))  # 20 / 4 = 5 s apart
    for _ in range(3):
        g.wait()
    assert clock.slept == [pytest.approx(5.0), pytest.approx(10.0), pytest.approx(15.0)]


def test_spacing_stops_once_plenty_is_left_again():
    clock = Clock()
    g = RateLimitGate(clock=lambda: clock.now, sleep=clock.slept.append, max_spacing=10)
    g.observe(response("3;w=20"))
    g.wait()
    g.observe(response("50;w=21600"))
    clock.now += 5  # the reserved slot has passed
    g.wait()
    g.wait()
    assert clock.slept == [pytest.approx(5.0)]
