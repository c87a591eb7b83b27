"""The rule gate narrows when the Prefect API pushes back, heard through Prefect's own client.

The API here is a small HTTP server on 127.0.0.1 that answers 503 (as a
SQLite-backed Prefect server does for `database is locked`) before it
answers; the client is Prefect's real one, so its retry message and logger
are the ones `flows.pushback` listens to.
"""

from __future__ import annotations

import contextvars
import http.server
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient

from flows.pushback import PUSHBACK_LOGGER, RuleGate, listen_for_pushback, rule_started


class _BusyApi(http.server.BaseHTTPRequestHandler):
    """`GET /api/health`: 503 for the first `busy` requests, then 200 `true`."""

    busy = 0

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        with server.lock:
            server.requests += 1
            refuse = server.requests <= server.busy
        body = b'{"detail": "database is locked"}' if refuse else b"true"
        self.send_response(503 if refuse else 200)
        if refuse:
            self.send_header("Retry-After", "0")  # no 2 s back-off in the test
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def __init__(self, busy: int):
        super().__init__(("127.0.0.1", 0), _BusyApi)
        self.busy = busy
        self.requests = 0
        self.lock = threading.Lock()


@pytest.fixture
def busy_api() -> Iterator[_Server]:
    server = _Server(busy=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _health(url: str) -> None:
    """A health check with Prefect's own client (its own: a flow's context has one too)."""
    with SyncPrefectClient(api=url) as client:
        assert client.api_healthcheck() is None  # None: healthy (it answered in the end)


def test_each_retry_of_prefects_client_is_heard_and_nothing_new_is_logged(
    busy_api: _Server,
) -> None:
    url = f"http://127.0.0.1:{busy_api.server_address[1]}/api"
    heard: list[str] = []
    everything = _Everything()
    prefect_logger = logging.getLogger("prefect")
    prefect_logger.addHandler(everything)
    client_logger = logging.getLogger(PUSHBACK_LOGGER)
    level_before, emitted_before = client_logger.level, client_logger.getEffectiveLevel()
    assert emitted_before > logging.DEBUG  # else there is nothing to leak
    try:
        with listen_for_pushback(heard.append):
            # a module of Prefect's client package imported during the run
            # takes the level it had, not the lowered one
            late = logging.getLogger("prefect.client.subscriptions")
            assert late.getEffectiveLevel() == emitted_before, late.getEffectiveLevel()
            late.debug("must not reach any handler")
            _health(url)
    finally:
        prefect_logger.removeHandler(everything)
    assert busy_api.requests == 3
    assert len(heard) == 2 and all("status code 503" in m for m in heard), heard
    emitted_from = client_logger.getEffectiveLevel()
    lowered = [r for r in everything.records if r.levelno < emitted_from]
    assert lowered == [], [r.getMessage() for r in lowered]
    assert client_logger.level == level_before  # the logger is as it was
    # Outside the listener the same retries are not heard.
    busy_api.requests, busy_api.busy = 0, 1
    _health(url)
    assert busy_api.requests == 2 and len(heard) == 2


def test_listeners_nest_in_any_order_and_a_failing_callback_breaks_nothing(
    busy_api: _Server,
) -> None:
    url = f"http://127.0.0.1:{busy_api.server_address[1]}/api"
    client_logger = logging.getLogger(PUSHBACK_LOGGER)
    level_before, filters_before = client_logger.level, list(client_logger.filters)
    heard: list[str] = []

    def broken(message: str) -> None:
        raise RuntimeError("a broken callback")

    first, second = listen_for_pushback(broken), listen_for_pushback(heard.append)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to enter leaves first
    _health(url)  # the broken callback is gone; the second still hears
    assert len(heard) == 2
    second.__exit__(None, None, None)
    assert client_logger.level == level_before
    assert client_logger.filters == filters_before
    with listen_for_pushback(broken):  # raising inside Prefect's retry loop breaks nothing
        busy_api.requests, busy_api.busy = 0, 1
        _health(url)
    assert busy_api.requests == 2


def test_the_gate_narrows_only_new_rules_and_never_widens() -> None:
    gate = RuleGate(3)
    inside = 0
    peak_after: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    def rule(wait: bool) -> None:
        nonlocal inside
        with gate.slot():
            with lock:
                inside += 1
                peak_after.append(inside)
            if wait:
                release.wait(5)
            else:
                time.sleep(0.02)
            with lock:
                inside -= 1

    first = [threading.Thread(target=rule, args=(True,), daemon=True) for _ in range(3)]
    for thread in first:
        thread.start()
    deadline = time.monotonic() + 5
    while inside < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inside == 3  # three at once before it narrows
    assert gate.narrow() and not gate.narrow()
    peak_after.clear()
    later = [threading.Thread(target=rule, args=(False,), daemon=True) for _ in range(4)]
    for thread in later:
        thread.start()
    time.sleep(0.3)
    assert peak_after == []  # none of the later rules starts while the three run
    release.set()
    for thread in first + later:
        thread.join(5)
    assert not any(thread.is_alive() for thread in first + later), "the gate hung"
    assert len(peak_after) == 7 - 3 and max(peak_after) == 1, peak_after
    assert gate.width == 1


def _run_all(threads: list[threading.Thread]) -> None:
    """Start `threads` (daemons) and fail if any has not finished within 5 s."""
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads), "the gate hung"


def _peak_concurrency(
    gate: RuleGate, rules: int, seconds: float = 0.1, widths: list[int] | None = None
) -> list[int]:
    """Run `rules` rules through `gate` at once; how many were inside as each one entered.

    `widths` gets the gate's width as each rule entered.
    """
    inside = 0
    seen: list[int] = []
    lock = threading.Lock()

    def rule() -> None:
        nonlocal inside
        with gate.slot():
            with lock:
                inside += 1
                seen.append(inside)
                if widths is not None:
                    widths.append(gate.width)
            time.sleep(seconds)
            with lock:
                inside -= 1

    _run_all([threading.Thread(target=rule) for _ in range(rules)])
    return seen


def test_an_adaptive_gate_starts_at_one_and_widens_as_rules_finish() -> None:
    gate = RuleGate(4, adaptive=True)
    widths: list[int] = []
    seen = _peak_concurrency(gate, 12, widths=widths)
    assert seen[0] == 1 and max(seen) == 4, seen
    # one, then two; it only grows (by one per finished rule) and stops at four
    assert widths[:2] == [1, 2] and widths == sorted(widths) and widths[-1] == 4, widths
    assert all(inside <= width for inside, width in zip(seen, widths, strict=True))
    assert gate.width == 4


def test_a_narrowed_adaptive_gate_stays_at_one() -> None:
    gate = RuleGate(4, adaptive=True)
    assert max(_peak_concurrency(gate, 3)) >= 2
    assert gate.narrow()
    assert max(_peak_concurrency(gate, 8)) == 1
    assert gate.width == 1


def test_a_fixed_gate_lets_its_width_in_at_once() -> None:
    assert max(_peak_concurrency(RuleGate(3), 6)) == 3


def test_a_started_rule_lets_the_next_one_in_before_it_ends() -> None:
    gate = RuleGate(4, adaptive=True)
    release, second_in = threading.Event(), threading.Event()

    def first() -> None:
        with gate.slot():
            rule_started()
            rule_started()  # once per slot: the gate widens by one, not two
            release.wait(5)

    def second() -> None:
        with gate.slot():
            second_in.set()

    threads = [threading.Thread(target=first, daemon=True)]
    threads[0].start()
    deadline = time.monotonic() + 5
    while gate.width < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gate.width == 2
    threads.append(threading.Thread(target=second, daemon=True))
    threads[1].start()
    try:
        assert second_in.wait(5)  # while the first rule still runs
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    assert not any(thread.is_alive() for thread in threads), "the gate hung"
    assert gate.width == 3  # the second one never called rule_started: widened at its end
    rule_started()  # outside any slot: nothing happens
    assert gate.width == 3


def test_a_sync_subflow_body_runs_in_the_calling_thread(prefect_api: None) -> None:
    """`rule_started` finds its slot through the thread: Prefect must keep the thread.

    Called as `flows.sync._run_rules` calls it: from a pool thread, in a copy
    of the parent flow's context.
    """

    @flow
    def child() -> int:
        return threading.get_ident()

    def call_child() -> tuple[int, int]:
        return threading.get_ident(), child()

    @flow
    def parent() -> tuple[int, int]:
        context = contextvars.copy_context()
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(context.run, call_child).result()

    caller, body = parent()
    assert caller == body


def test_the_rule_pool_narrows_its_gate_when_the_api_pushes_back(
    prefect_api: None, busy_api: _Server
) -> None:
    from flows.sync import _narrow_on_pushback

    url = f"http://127.0.0.1:{busy_api.server_address[1]}/api"
    adaptive, fixed = RuleGate(4, adaptive=True), RuleGate(4)

    @flow
    def parent() -> None:
        with _narrow_on_pushback(fixed):  # a chosen --rule-concurrency
            _health(url)
        busy_api.requests, busy_api.busy = 0, 1
        with _narrow_on_pushback(adaptive):
            _health(url)

    parent()
    assert (fixed.ceiling, fixed.width) == (4, 4)
    assert (adaptive.ceiling, adaptive.width) == (1, 1)
