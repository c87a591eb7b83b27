"""Counters of a zoo proxy: requests by kind, requests in flight, faults and quirks, a log.

`stats` counts connections, requests by `(method, kind)`, the largest number
of requests in flight (overall and per `(method, kind)`), and every fault or
quirk the proxy answered with; `log` keeps one `ProxyRequest` per request
with its timings and the scheme of its `Authorization` (never the secret).
Blob upload `PUT`s are the ones a registry-wide concurrency limit caps:
`uploads()` lists them, `max_inflight_by[("PUT", "upload")]` is their peak.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.support.zoo.wire import Request

__all__ = ["Counters", "ProxyRequest", "ProxyStats"]


@dataclass
class ProxyRequest:
    """One request the proxy handled.

    Attributes:
        method / target / kind: request line and `classify_path` kind (`token`
            for requests to the token realm, `cdn` on a storage origin).
        started / ended: `time.monotonic()` when the head arrived / the
            response was finished (or abandoned).
        status: the status answered (None if the connection was reset first).
        fault: the fault or quirk answered, `upstream-error` when the registry
            connection failed on its own, or None.
        bytes_up: request body bytes forwarded so far.
        bytes_down: response body bytes sent so far.
        authorization: the scheme of the `Authorization` header (`basic`,
            `bearer`) or None; never the credentials.
    """

    method: str
    target: str
    kind: str
    started: float
    ended: float | None = None
    status: int | None = None
    fault: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    authorization: str | None = None


@dataclass
class ProxyStats:
    """Counters of everything the proxy saw (read them through `snapshot()`)."""

    connections: int = 0
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    max_inflight: int = 0
    max_inflight_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    upstream_errors: int = 0

    @property
    def total_requests(self) -> int:
        """Every request received."""
        return sum(self.requests.values())

    @property
    def total_faults(self) -> int:
        """Every fault injected."""
        return sum(self.faults.values())

    def summary(self) -> str:
        """One line, quotable in a report."""
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        share = self.total_faults / self.total_requests if self.total_requests else 0.0
        return (
            f"{self.connections} connections, {self.total_requests} requests, "
            f"{self.total_faults} faults ({share:.1%}): {faults or 'none'}; "
            f"max in flight {self.max_inflight}; upstream errors {self.upstream_errors}"
        )

    def by_kind(self) -> str:
        """Requests by `METHOD kind`, sorted: `GET blob 12, HEAD manifest 3, ...`."""
        return ", ".join(f"{m} {k} {n}" for (m, k), n in sorted(self.requests.items()))


class Counters:
    """The live counters and log of one proxy, updated under its lock."""

    def __init__(self, lock: threading.Lock):
        self._lock = lock
        self.stats = ProxyStats()
        self.log: list[ProxyRequest] = []
        self._inflight: Counter[tuple[str, str]] = Counter()
        self._inflight_total = 0

    def connected(self) -> None:
        """Count a new client connection."""
        with self._lock:
            self.stats.connections += 1

    def begin(self, request: Request) -> ProxyRequest:
        """Log and count `request`, which has just arrived."""
        auth = request.header("authorization")
        record = ProxyRequest(
            request.method,
            request.target,
            request.kind,
            time.monotonic(),
            authorization=auth.split(" ", 1)[0].lower() if auth else None,
        )
        key = (request.method, request.kind)
        with self._lock:
            self.log.append(record)
            self.stats.requests[key] += 1
            self._inflight[key] += 1
            self._inflight_total += 1
            self.stats.max_inflight = max(self.stats.max_inflight, self._inflight_total)
            by = self.stats.max_inflight_by
            by[key] = max(by[key], self._inflight[key])
        return record

    def end(self, request: Request, record: ProxyRequest) -> None:
        """`request` is answered (or abandoned)."""
        with self._lock:
            record.ended = time.monotonic()
            self._inflight[(request.method, request.kind)] -= 1
            self._inflight_total -= 1

    def fault(self, kind: str, record: ProxyRequest) -> None:
        """Count fault (or quirk) `kind`, answered to `record`'s request."""
        with self._lock:
            record.fault = kind
            self.stats.faults[kind] += 1

    def upstream_error(self, record: ProxyRequest) -> None:
        """The registry connection failed on its own."""
        with self._lock:
            self.stats.upstream_errors += 1
            record.fault = record.fault or "upstream-error"

    def snapshot(self) -> ProxyStats:
        """A consistent copy of the counters."""
        with self._lock:
            s = self.stats
            return ProxyStats(
                s.connections,
                Counter(s.requests),
                Counter(s.faults),
                s.max_inflight,
                Counter(s.max_inflight_by),
                s.upstream_errors,
            )

    def requests(self) -> list[ProxyRequest]:
        """A copy of the request log, in arrival order."""
        with self._lock:
            return list(self.log)

    def active(self) -> list[ProxyRequest]:
        """Requests still in progress."""
        with self._lock:
            return [r for r in self.log if r.ended is None]

    def uploads(self) -> list[ProxyRequest]:
        """Every blob upload `PUT` (monolithic or committing), in arrival order."""
        return [r for r in self.requests() if r.method == "PUT" and r.kind == "upload"]
