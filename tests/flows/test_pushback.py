"""The rule gate narrows when the Prefect API pushes back, heard through Prefect's own client.

The API here is a small HTTP server on 127.0.0.1 that answers 503 (as a
SQLite-backed Prefect server does for `database is locked`) before it
answers; the client is Prefect's real one, so its retry message and logger
are the ones `flows.pushback` listens to.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

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
    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as c:
        assert c.api_healthcheck() is None  # None: healthy (it answered in the end)


def test_each_retry_of_prefects_client_is_heard_and_nothing_new_is_logged(
    busy_api: _Server,
) -> None:
    url = f"http://127.0.0.1:{busy_api.server_address[1]}/api"
    heard: list[str] = []
    everything = _Everything()
    prefect_logger = logging.getLogger("prefect")
    prefect_logger.addHandler(everything)
    client_logger = logging.getLogger(PUSHBACK_LOGGER)
    level_before = client_logger.level
    try:
        with listen_for_pushback(heard.append):
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

    first = [threading.Thread(target=rule, args=(True,)) for _ in range(3)]
    for thread in first:
        thread.start()
    deadline = time.monotonic() + 5
    while inside < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inside == 3  # three at once before it narrows
    assert gate.narrow() and not gate.narrow()
    peak_after.clear()
    later = [threading.Thread(target=rule, args=(False,)) for _ in range(4)]
    for thread in later:
        thread.start()
    time.sleep(0.1)
    assert peak_after == []  # none of the later rules starts while the three run
    release.set()
    for thread in first + later:
        thread.join(5)
    assert len(peak_after) == 7 - 3 and max(peak_after) == 1, peak_after
    assert gate.width == 1


def _peak_concurrency(gate: RuleGate, rules: int, seconds: float = 0.1) -> list[int]:
    """Run `rules` rules through `gate` at once; how many were inside as each one entered."""
    inside = 0
    seen: list[int] = []
    lock = threading.Lock()

    def rule() -> None:
        nonlocal inside
        with gate.slot():
            with lock:
                inside += 1
                seen.append(inside)
            time.sleep(seconds)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=rule) for _ in range(rules)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    return seen


def test_an_adaptive_gate_starts_at_one_and_widens_as_rules_finish() -> None:
    gate = RuleGate(4, adaptive=True)
    seen = _peak_concurrency(gate, 12)
    assert seen[0] == 1 and max(seen) == 4, seen
    assert seen.index(max(seen)) >= 3, seen  # one, then two, then three before four
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

    threads = [threading.Thread(target=first)]
    threads[0].start()
    deadline = time.monotonic() + 5
    while gate.width < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gate.width == 2
    threads.append(threading.Thread(target=second))
    threads[1].start()
    try:
        assert second_in.wait(5)  # while the first rule still runs
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    assert gate.width == 3  # the second one never called rule_started: widened at its end
    rule_started()  # outside any slot: nothing happens
    assert gate.width == 3


def test_a_sync_subflow_body_runs_in_the_calling_thread(prefect_api: None) -> None:
    """`rule_started` finds its slot through the thread: Prefect must keep the thread."""

    @flow
    def child() -> int:
        return threading.get_ident()

    @flow
    def parent() -> tuple[int, int]:
        return threading.get_ident(), child()

    outer, inner = parent()
    assert outer == inner
