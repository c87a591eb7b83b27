"""Rule concurrency that narrows when the Prefect API pushes back.

Four rule subflows at once are the faster on a PostgreSQL-backed Prefect
server, and much the slower on a SQLite one, which is what the README's
`prefect server start` runs: concurrent writes there fail with `database is
locked`, the server answers 503, and Prefect's client waits ~2 s before it
tries again (20-rule no-op, measured: 14.7 s in-flow at 4 rules at a time,
5.7 s at 1). The client cannot tell the two servers apart up front: the
admin settings mask the database URL. So the rule pool listens for the
pushback itself. Prefect's client logs every request it retries for a
429/502/503/408 answer at DEBUG level on `prefect.client`; the first one
narrows the gate to one rule subflow at a time for the rest of the run.

Listening lowers that one logger's level for the run, with a filter that
drops every record the logger would not have emitted before, so what
reaches the console and the API logs does not change.
"""

from __future__ import annotations

import importlib.util
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

__all__ = ["PUSHBACK_LOGGER", "RuleGate", "listen_for_pushback", "rule_started"]

#: Where Prefect's HTTP client (`prefect.client.base`) logs its retries.
PUSHBACK_LOGGER = "prefect.client"

#: The start of the message Prefect's client logs before retrying a pushed-back request.
_RETRY_MESSAGE = "Received response with retryable status code"


class RuleGate:
    """How many rule subflows may be in progress at once.

    An adaptive gate starts at one and widens by one each time a rule's
    subflow has started (`rule_started`, or when it ends), up to `ceiling`:
    TCP's slow start. A server that cannot take concurrent subflows is found
    out by the second or third rule, not by `ceiling` of them colliding at
    once (each collision costs the client's back-off, 2 s, then 4 s).
    `narrow()` then holds it at one for the rest of the run. Rules already
    running when it narrows finish; new ones wait.
    """

    def __init__(self, ceiling: int, *, adaptive: bool = False):
        self.ceiling = max(1, ceiling)
        self.adaptive = adaptive
        self.width = 1 if adaptive else self.ceiling
        self._active = 0
        self._changed = threading.Condition()

    def narrow(self) -> bool:
        """One rule at a time from now on; True if that changed the gate."""
        with self._changed:
            changed = self.ceiling > 1
            self.width = self.ceiling = 1
            return changed

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the gate's slots while the body (a rule subflow) runs."""
        with self._changed:
            self._changed.wait_for(lambda: self._active < self.width)
            self._active += 1
        _current.gate = self  # until `rule_started` has widened it
        try:
            yield
        finally:
            not_widened, _current.gate = _current.gate is self, None
            with self._changed:
                self._active -= 1
                if not_widened:
                    self._widen()
                self._changed.notify_all()

    def started(self) -> None:
        """A rule subflow holding a slot has started: widen by one (adaptive gates)."""
        with self._changed:
            self._widen()
            self._changed.notify_all()

    def _widen(self) -> None:
        """One more rule at once, up to the ceiling (the condition's lock is held)."""
        if self.adaptive:
            self.width = min(self.ceiling, self.width + 1)


#: The gate slot the current thread holds, for `rule_started`.
_current = threading.local()


def rule_started() -> None:
    """Tell the gate of this thread's slot that its rule subflow has started.

    Called first in a rule subflow's body: its start is recorded, so the
    next rule may begin at once instead of when this one ends (a cold rule
    can take many seconds). A no-op outside a slot (Prefect running the
    body in another thread leaves the widening to the slot's end).
    """
    gate: RuleGate | None = getattr(_current, "gate", None)
    if gate is not None:
        _current.gate = None  # once per slot
        gate.started()


class _RetryListener(logging.Filter):
    """The one filter on `prefect.client`: reports retries, drops the lowered records.

    Shared by every `listen_for_pushback` in the process (reference-counted),
    so runs that listen at once, in any order of entering and leaving, leave
    the logger exactly as they found it.
    """

    def __init__(self, emit_from: int, level: int, children: list[logging.Logger]):
        super().__init__()
        self.emit_from = emit_from  # the lowest level the logger emitted before
        self.level = level  # the logger's own level before
        self.children = children  # child loggers pinned to `emit_from`
        self.callbacks: list[Callable[[str], None]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_RETRY_MESSAGE):
            message = record.getMessage()
            for callback in list(self.callbacks):
                with suppress(Exception):  # never break Prefect's retry loop
                    callback(message)
        return record.levelno >= self.emit_from


_LISTENING_LOCK = threading.Lock()
_LISTENER: _RetryListener | None = None


@contextmanager
def listen_for_pushback(on_retry: Callable[[str], None]) -> Iterator[None]:
    """Call `on_retry(message)` for each request Prefect's client retries after pushback."""
    listener = _start_listening()
    listener.callbacks.append(on_retry)
    try:
        yield
    finally:
        listener.callbacks.remove(on_retry)
        _stop_listening()


def _start_listening() -> _RetryListener:
    """Install the shared filter and lower the logger's level (first listener only)."""
    global _LISTENER
    with _LISTENING_LOCK:
        if _LISTENER is None:
            logger = logging.getLogger(PUSHBACK_LOGGER)
            emit_from = logger.getEffectiveLevel()
            # Child loggers (`prefect.client.subscriptions`) would inherit the
            # lowered level and pass their DEBUG records on to the console.
            children = _unpinned_children(PUSHBACK_LOGGER)
            for child in children:
                child.setLevel(emit_from)
            _LISTENER = _RetryListener(emit_from, logger.level, children)
            logger.addFilter(_LISTENER)
            if emit_from > logging.DEBUG:
                logger.setLevel(logging.DEBUG)
        return _LISTENER


def _stop_listening() -> None:
    """Put the logger and its children back as they were (last listener only)."""
    global _LISTENER
    with _LISTENING_LOCK:
        listener = _LISTENER
        if listener is None or listener.callbacks:
            return
        logger = logging.getLogger(PUSHBACK_LOGGER)
        logger.removeFilter(listener)
        logger.setLevel(listener.level)
        for child in listener.children:
            child.setLevel(logging.NOTSET)
        _LISTENER = None


def _unpinned_children(name: str) -> list[logging.Logger]:
    """The loggers under `name` that would take their level from it.

    Those that exist, and those the package's modules would create when
    imported later in the run (`get_logger(__name__)`), made now so they
    are pinned too.
    """
    package = importlib.util.find_spec(name)
    if package is not None and package.submodule_search_locations:
        for module in pkgutil.walk_packages(package.submodule_search_locations, name + "."):
            logging.getLogger(module.name)
    loggers = list(logging.root.manager.loggerDict.items())
    return [
        child
        for key, child in loggers
        if key.startswith(name + ".")
        and isinstance(child, logging.Logger)
        and child.level == logging.NOTSET
    ]
