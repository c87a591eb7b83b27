"""Slow down before a registry's pull quota runs out (Docker Hub's `RateLimit-*` headers).

Docker Hub answers manifest requests with `ratelimit-limit: 100;w=21600` and
`ratelimit-remaining: 20;w=21600`. A mirror that keeps going at full speed
burns the rest of the window and then fails every image with 429. The gate
reads those headers and, per registry client:

- when the window is exhausted (`remaining` 0), holds further manifest
  requests until the window passes, at most `max_pause` seconds (after that
  a 429 is left to the retry policy and Prefect's task retries);
- when few requests are left (at or below the low-water mark), spaces
  manifest requests out, at most `max_spacing` seconds apart.
Registries that send no such headers are never slowed down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

__all__ = ["RateLimitGate", "parse_ratelimit"]


def parse_ratelimit(value: str | None) -> tuple[int, float | None] | None:
    """Parse `N;w=SECONDS` into (N, window); None if absent or malformed."""
    if not value:
        return None
    head, _, params = value.partition(";")
    try:
        count = int(head.strip())
    except ValueError:
        return None
    window: float | None = None
    for param in params.split(";"):
        name, _, raw = param.strip().partition("=")
        if name.lower() == "w":
            try:
                window = float(raw)
            except ValueError:
                window = None
    return count, window


@dataclass
class RateLimitGate:
    """Delay manifest requests according to the last `ratelimit-*` headers seen."""

    max_pause: float = 60.0
    max_spacing: float = 10.0
    low_water: int = 5
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _not_before: float = 0.0
    _spacing: float = 0.0
    _last_start: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self) -> None:
        """Block until a manifest request may be sent.

        Each caller reserves its own start time, so threads waiting on the
        same client leave one spacing apart instead of all at once.
        """
        with self._lock:
            now = self.clock()
            start = max(now, self._not_before, self._last_start + self._spacing)
            self._last_start = start
        if start > now:
            self.sleep(start - now)

    def observe(self, response: httpx.Response) -> None:
        """Update the gate from a response's `ratelimit-remaining` header."""
        parsed = parse_ratelimit(response.headers.get("ratelimit-remaining"))
        if parsed is None:
            return
        remaining, window = parsed
        window = window if window is not None else self.max_pause
        spacing = 0.0
        if remaining <= 0:
            delay = min(window, self.max_pause)
        elif remaining <= self.low_water:
            delay = spacing = min(window / (remaining + 1), self.max_spacing)
        else:
            delay = 0.0
        with self._lock:
            self._spacing = spacing
            self._not_before = max(self._not_before, self.clock() + delay)
