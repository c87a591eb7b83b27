"""Fault injection: which requests get which fault, drawn from a seeded generator.

| kind               | what the client sees                                              |
| ------------------ | ----------------------------------------------------------------- |
| `500` `502` `503`  | that status with an OCI `errors[]` body                           |
| `429`              | 429 without `Retry-After`                                         |
| `429-retry-after`  | 429 with `Retry-After: <rule.retry_after>`                        |
| `reset`            | the connection reset (RST) before any response byte               |
| `cut`              | a real 2xx response's headers and part of its body, then EOF      |
| `delay`            | the real response, `rule.delay` seconds late                      |
| `token-fail`       | 503 from the token endpoint (requests routed through `/_realm/`)  |
| `invalidate-token` | 401 + a fresh Bearer challenge; that token stays revoked afterwards |
| `redirect`         | 307 to `rule.redirect(path)` (blob storage on another origin)     |
| `cut-upload`       | part of a PUT/PATCH body reaches the registry, then a reset       |

Decisions are drawn from `random.Random(seed)`: the same seed gives the same
sequence of decisions, though concurrent requests may reach it in any order.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tests.support.zoo.wire import Request

__all__ = ["CHAOS_KINDS", "FAULT_KINDS", "Decider", "FaultRule", "fault_response"]

FAULT_KINDS = (
    "500",
    "502",
    "503",
    "429",
    "429-retry-after",
    "reset",
    "cut",
    "delay",
    "token-fail",
    "invalidate-token",
    "redirect",
    "cut-upload",
)
#: The mix used by convergence runs: everything a client must survive by retrying
#: (a `delay` needs a short client timeout, a `redirect` a place to redirect to).
CHAOS_KINDS = tuple(kind for kind in FAULT_KINDS if kind not in ("delay", "redirect", "cut-upload"))
STATUS_KINDS = {"500": 500, "502": 502, "503": 503, "429": 429, "429-retry-after": 429}
#: Faults answered by the proxy itself with a status (the request body is drained first).
ANSWERED_KINDS = frozenset({*STATUS_KINDS, "token-fail", "invalidate-token", "redirect"})


@dataclass(frozen=True)
class FaultRule:
    """Inject one of `kinds` into a share `rate` of the matching requests.

    Attributes:
        kinds: fault kinds to choose from (uniformly, among those that apply
            to the request: `cut` only to GETs (and is dropped if the answer
            is not a 2xx with a body), `invalidate-token` only to requests
            with a Bearer token that worked before, `token-fail` only to
            token requests, `redirect` only to blob GETs).
        rate: probability that a matching request is faulted.
        path: regex searched in the request path (with query), or None.
        repository: regex matched in full against the repository name, or None.
        methods: only these methods (None: any).
        endpoints: only these `classify_path` kinds (plus `token`), or None.
        limit: stop after this many injections (None: never).
        max_streak: never fault the same request (method, path with upload
            ids and `_state` left out) more than this many times in a row, so
            a retry of it eventually goes through, as transient faults do
            (None: independent draws).
        retry_after: the `Retry-After` value of `429-retry-after`.
        delay: seconds of `delay`.
        cut_fraction: share of the body `cut` lets through (at least 1 byte).
        cut_bytes: body bytes `cut` / `cut-upload` let through instead of a
            share; bodies no longer than this are not cut.
        redirect: `path -> absolute URL` for `redirect`.
    """

    kinds: Sequence[str] = CHAOS_KINDS
    rate: float = 1.0
    path: str | None = None
    repository: str | None = None
    methods: frozenset[str] | None = None
    endpoints: frozenset[str] | None = None
    limit: int | None = None
    max_streak: int | None = None
    retry_after: str = "1"
    delay: float = 2.0
    cut_fraction: float = 0.5
    cut_bytes: int | None = None
    redirect: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")

    def matches(self, request: Request) -> bool:
        """Whether this rule considers `request` at all."""
        if self.methods is not None and request.method not in self.methods:
            return False
        if self.endpoints is not None and request.kind not in self.endpoints:
            return False
        if self.path is not None and not re.search(self.path, request.target):
            return False
        if self.repository is not None:
            return request.repository is not None and bool(
                re.fullmatch(self.repository, request.repository)
            )
        return True

    def allowance(self, length: int) -> int | None:
        """Body bytes a cut lets through of a `length`-byte body, or None to leave it whole."""
        if self.cut_bytes is not None:
            return self.cut_bytes if length > self.cut_bytes else None
        if length <= 1:
            return None
        return max(1, min(length - 1, int(length * self.cut_fraction)))

    def _cuts_upload(self, request: Request) -> bool:
        if request.method not in ("PUT", "PATCH") or request.kind != "upload":
            return False
        length = request.header("content-length") or ""
        return length.isdigit() and self.allowance(int(length)) is not None

    def applicable(self, request: Request) -> list[str]:
        """The kinds that make sense for `request`."""
        kinds = []
        for kind in self.kinds:
            if kind == "cut" and request.method != "GET":
                continue
            if kind == "cut-upload" and not self._cuts_upload(request):
                continue
            if kind == "invalidate-token" and not request.bearer:
                continue
            if kind == "token-fail" and request.kind != "token":
                continue
            if kind == "redirect" and not (request.method == "GET" and request.kind == "blob"):
                continue
            kinds.append(kind)
        return kinds


class Decider:
    """The rules in force and the state of their draws (uses, streaks, revoked tokens)."""

    def __init__(self, seed: int, rules: Iterable[FaultRule], lock: threading.Lock):
        self._lock = lock
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = list(rules)
        self._used: Counter[int] = Counter()
        self._streaks: Counter[tuple[str, str]] = Counter()
        self._tokens_seen: set[str] = set()
        self._revoked: set[str] = set()

    def set_rules(self, rules: Iterable[FaultRule]) -> None:
        """Replace the rules (the first rule that fires wins); uses and streaks start over."""
        with self._lock:
            self._rules = list(rules)
            self._used.clear()
            self._streaks.clear()

    def decide(self, request: Request) -> tuple[str, FaultRule | None] | None:
        """The fault for `request` and the rule that chose it, or None."""
        token = request.token
        with self._lock:
            if token is not None and token in self._revoked:
                return "invalidate-token", None  # a revoked token stays revoked
            decision = self._draw(request, token)
            if token is not None:
                self._tokens_seen.add(token)
            if decision is not None and decision[0] == "invalidate-token":
                assert token is not None
                self._revoked.add(token)
            return decision

    def _draw(self, request: Request, token: str | None) -> tuple[str, FaultRule] | None:
        key = request.streak_key
        for index, rule in enumerate(self._rules):
            if not rule.matches(request):
                continue
            if rule.limit is not None and self._used[index] >= rule.limit:
                continue
            if self._rng.random() >= rule.rate:
                continue
            if rule.max_streak is not None and self._streaks[key] >= rule.max_streak:
                continue
            kinds = rule.applicable(request)
            if token not in self._tokens_seen:
                # Revoke only a token that has worked before: a freshly issued
                # token refused at once is a real authentication failure.
                kinds = [k for k in kinds if k != "invalidate-token"]
            if not kinds:
                continue
            self._used[index] += 1
            self._streaks[key] += 1
            return self._rng.choice(kinds), rule
        self._streaks.pop(key, None)
        return None

    def release(self, request: Request) -> None:
        """Undo the count of a `cut` that turned out not to apply (not a 2xx with a body)."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if "cut" in rule.kinds and rule.matches(request) and self._used[index] > 0:
                    self._used[index] -= 1
                    return


def fault_response(
    kind: str, rule: FaultRule | None, request: Request, challenge: str | None
) -> tuple[int, dict[str, str]]:
    """Status and headers of a fault the proxy answers itself.

    `challenge` is the last Bearer challenge the registry sent: an
    `invalidate-token` answers with it, scoped to the request's repository.
    """
    if kind == "429-retry-after":
        assert rule is not None
        return 429, {"Retry-After": rule.retry_after}
    if kind in STATUS_KINDS:
        return STATUS_KINDS[kind], {}
    if kind == "token-fail":
        return 503, {}
    if kind == "redirect":
        assert rule is not None and rule.redirect is not None, "a redirect rule needs redirect="
        return 307, {"Location": rule.redirect(request.target)}
    # invalidate-token: the challenge a registry sends for a revoked token.
    base = challenge or 'Bearer realm="http://127.0.0.1:1/token"'
    base = re.sub(r',\s*scope="[^"]*"', "", base)
    base = re.sub(r',\s*error="[^"]*"', "", base)
    if request.repository is not None:
        actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
        base += f',scope="repository:{request.repository}:{actions}"'
    return 401, {"WWW-Authenticate": base + ',error="invalid_token"'}
