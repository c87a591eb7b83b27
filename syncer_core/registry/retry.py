"""Request-level retry policy: exponential backoff with jitter, honouring Retry-After.

Only idempotent, body-replayable requests are retried here (manifest and blob
HEAD/GET, tag listing, upload start, manifest PUT). A streamed upload cannot
be replayed; the blob copy above retries it as a whole.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from syncer_core.errors import RateLimitedError, RegistryError, TransientRegistryError

__all__ = ["RetryPolicy", "call_with_retries"]

T = TypeVar("T")
_RNG = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying a failed request.

    Attributes:
        attempts: total tries, the first included (1 disables retries).
        base_delay: the first backoff in seconds; doubles on each retry.
        max_delay: the cap on one computed backoff.
        jitter: +/- fraction of randomness applied to computed backoffs.
        max_retry_after: a `Retry-After` longer than this is not waited for:
            the error is raised so the caller (Prefect task retries) decides.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.2
    max_retry_after: float = 60.0

    def delay(
        self, attempt: int, error: RegistryError, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before retry number `attempt` (1-based), or None to give up.

        Non-transient errors (401/403/404, rejected manifests, ...) are never retried.
        """
        if attempt >= self.attempts or not isinstance(error, TransientRegistryError):
            return None
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return float(error.retry_after)
        backoff = min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1)))
        spread = (rng or _RNG).uniform(-self.jitter, self.jitter)
        return max(0.0, backoff * (1 + spread))


def call_with_retries(
    operation: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Run `operation`, retrying transient `RegistryError`s as `policy` allows.

    `sleep` defaults to `time.sleep`, looked up at call time so tests can patch it.
    """
    attempt = 1
    while True:
        try:
            return operation()
        except RegistryError as error:
            wait = policy.delay(attempt, error)
            if wait is None:
                raise
            (sleep or time.sleep)(wait)
            attempt += 1
