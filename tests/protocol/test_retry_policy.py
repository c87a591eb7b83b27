"""`RetryPolicy` backoff decisions, `call_with_retries`, and retries through the client."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import httpx
import pytest

from syncer_core.errors import (
    AuthenticationError,
    DigestMismatchError,
    ManifestRejectedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RegistryError,
    TLSVerificationError,
    TransientRegistryError,
)
from syncer_core.manifest import RawManifest
from syncer_core.mediatypes import OCI_MANIFEST
from syncer_core.registry import RetryPolicy
from syncer_core.registry.retry import call_with_retries
from tests.support.mock_registry import MockRegistry

DIGEST = "sha256:" + "a" * 64
MANIFEST_BODY = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","layers":[]}'


@pytest.fixture
def mock() -> Iterator[MockRegistry]:
    registry = MockRegistry()
    yield registry
    registry.assert_done()


class EdgeRng(random.Random):
    """A `random.Random` whose `uniform` always returns one end of the range."""

    def __init__(self, high: bool):
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def transient(status: int = 503) -> TransientRegistryError:
    return TransientRegistryError("boom", registry="r", status_code=status)


def rate_limited(retry_after: float | None) -> RateLimitedError:
    return RateLimitedError("slow down", registry="r", status_code=429, retry_after=retry_after)


# -- RetryPolicy.delay ---------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [0.0, 1.0, 7.5, 60.0])
def test_retry_after_is_waited_exactly(retry_after: float) -> None:
    policy = RetryPolicy(jitter=0.5)
    assert policy.delay(1, rate_limited(retry_after), EdgeRng(high=True)) == retry_after
    assert policy.delay(3, rate_limited(retry_after), EdgeRng(high=False)) == retry_after


def test_retry_after_beyond_the_limit_gives_up() -> None:
    policy = RetryPolicy(max_retry_after=30.0)
    assert policy.delay(1, rate_limited(30.0)) == 30.0
    assert policy.delay(1, rate_limited(30.5)) is None
    assert policy.delay(1, rate_limited(3600.0)) is None


@pytest.mark.parametrize("error", [rate_limited(None), transient(503), transient(500)])
@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_backoff_is_exponential_within_jitter_bounds(error: RegistryError, attempt: int) -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=100.0, jitter=0.2)
    backoff = 0.5 * 2 ** (attempt - 1)
    assert policy.delay(attempt, error, EdgeRng(high=False)) == pytest.approx(backoff * 0.8)
    assert policy.delay(attempt, error, EdgeRng(high=True)) == pytest.approx(backoff * 1.2)
    rng = random.Random(attempt)
    for _ in range(200):
        wait = policy.delay(attempt, error, rng)
        assert wait is not None
        assert backoff * 0.8 <= wait <= backoff * 1.2


def test_backoff_without_jitter_doubles() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.25, jitter=0.0, max_delay=100.0)
    waits = [policy.delay(n, transient()) for n in range(1, 6)]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0]


def test_backoff_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(attempts=20, base_delay=1.0, max_delay=5.0, jitter=0.0)
    assert [policy.delay(n, transient()) for n in (3, 4, 10, 19)] == [4.0, 5.0, 5.0, 5.0]


def test_jitter_applies_around_the_capped_backoff() -> None:
    # The cap bounds the computed backoff; jitter then spreads around it
    # (documented on `RetryPolicy.jitter`), so a wait may exceed `max_delay`
    # by at most the jitter fraction.
    policy = RetryPolicy(attempts=20, base_delay=1.0, max_delay=5.0, jitter=0.2)
    assert policy.delay(15, transient(), EdgeRng(high=True)) == pytest.approx(6.0)
    assert policy.delay(15, transient(), EdgeRng(high=False)) == pytest.approx(4.0)


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("401", registry="r", status_code=401),
        PermissionDeniedError("403", registry="r", status_code=403),
        NotFoundError("404", registry="r", status_code=404),
        ManifestRejectedError("400", registry="r", status_code=400),
        TLSVerificationError("tls", registry="r"),
        RegistryError("400", registry="r", status_code=400),
        DigestMismatchError("sha256:a", "sha256:b"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_non_retryable_errors_give_up_at_once(error: Exception) -> None:
    assert RetryPolicy(attempts=10).delay(1, error) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("attempts", [1, 2, 4])
def test_exhausted_attempts_give_up(attempts: int) -> None:
    policy = RetryPolicy(attempts=attempts)
    assert policy.delay(attempts, transient()) is None
    assert policy.delay(attempts, rate_limited(1.0)) is None
    if attempts > 1:
        assert policy.delay(attempts - 1, transient()) is not None


# -- call_with_retries -----------------------------------------------------------------


class Flaky:
    """An operation that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_call_with_retries_waits_between_attempts() -> None:
    waits: list[float] = []
    operation = Flaky(transient(), rate_limited(3.0), transient())
    policy = RetryPolicy(attempts=4, base_delay=1.0, jitter=0.0)
    assert call_with_retries(operation, policy, sleep=waits.append) == "ok"
    assert operation.calls == 4
    assert waits == [1.0, 3.0, 4.0]


def test_call_with_retries_reraises_when_attempts_run_out() -> None:
    waits: list[float] = []
    last = transient(502)
    operation = Flaky(transient(), transient(), last, transient())
    with pytest.raises(TransientRegistryError) as info:
        call_with_retries(operation, RetryPolicy(attempts=3, jitter=0.0), sleep=waits.append)
    assert info.value is last
    assert operation.calls == 3
    assert waits == [0.5, 1.0]


def test_call_with_retries_does_not_retry_permanent_errors() -> None:
    waits: list[float] = []
    operation = Flaky(NotFoundError("gone", registry="r", status_code=404))
    with pytest.raises(NotFoundError):
        call_with_retries(operation, RetryPolicy(attempts=5), sleep=waits.append)
    assert operation.calls == 1
    assert waits == []


def test_call_with_retries_gives_up_on_a_long_retry_after() -> None:
    waits: list[float] = []
    operation = Flaky(rate_limited(600.0))
    with pytest.raises(RateLimitedError):
        call_with_retries(operation, RetryPolicy(max_retry_after=60.0), sleep=waits.append)
    assert operation.calls == 1
    assert waits == []


def test_call_with_retries_lets_other_exceptions_through() -> None:
    operation = Flaky(DigestMismatchError("sha256:a", "sha256:b"))
    with pytest.raises(DigestMismatchError):
        call_with_retries(operation, RetryPolicy(attempts=5), sleep=lambda _: None)
    assert operation.calls == 1


# -- through the client ------------------------------------------------------------------
#
# The client calls `call_with_retries(op, self.retry)` with the default
# `sleep=time.sleep`, bound when `retry.py` was imported, so neither a
# RetryPolicy nor monkeypatching `retry.time.sleep` can replace the sleep.
# Backoffs are kept tiny through the policy; the Retry-After test waits 1 s
# for real.

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002, jitter=0.0)
MANIFEST_PATH = "/v2/library/app/manifests/1.0"


def test_head_retries_5xx_until_success(mock: MockRegistry) -> None:
    mock.expect("HEAD", MANIFEST_PATH, status=503)
    mock.expect("HEAD", MANIFEST_PATH, status=503)
    mock.expect("HEAD", MANIFEST_PATH, headers={"Docker-Content-Digest": DIGEST})
    head = mock.client(retry=FAST).head_manifest("library/app", "1.0")
    assert head is not None and head.digest == DIGEST
    assert len(mock.calls) == 3


def test_retries_stop_after_the_attempt_budget(mock: MockRegistry) -> None:
    for _ in range(4):
        mock.expect("HEAD", MANIFEST_PATH, status=502)
    with pytest.raises(TransientRegistryError) as info:
        mock.client(retry=FAST).head_manifest("library/app", "1.0")
    assert info.value.status_code == 502


def test_get_manifest_honours_retry_after(mock: MockRegistry) -> None:
    mock.expect("GET", MANIFEST_PATH, status=429, headers={"Retry-After": "1"})
    mock.expect("GET", MANIFEST_PATH, content=MANIFEST_BODY, headers={"Content-Type": OCI_MANIFEST})
    started = time.monotonic()
    manifest = mock.client(retry=FAST).get_manifest("library/app", "1.0")
    elapsed = time.monotonic() - started
    assert manifest.data == MANIFEST_BODY
    assert 1.0 <= elapsed < 5.0  # exactly Retry-After, not FAST's millisecond backoff


def test_retry_after_beyond_the_limit_is_raised_at_once(mock: MockRegistry) -> None:
    mock.expect("GET", MANIFEST_PATH, status=429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimitedError) as info:
        mock.client(retry=FAST).get_manifest("library/app", "1.0")
    assert info.value.retry_after == 3600.0


def test_404_is_not_retried(mock: MockRegistry) -> None:
    mock.expect("GET", MANIFEST_PATH, status=404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
    with pytest.raises(NotFoundError):
        mock.client(retry=FAST).get_manifest("library/app", "1.0")


def test_head_404_is_absence_not_retried(mock: MockRegistry) -> None:
    mock.expect("HEAD", MANIFEST_PATH, status=404)
    assert mock.client(retry=FAST).head_manifest("library/app", "1.0") is None


def test_manifest_put_is_retried_with_the_same_bytes(mock: MockRegistry) -> None:
    manifest = RawManifest(OCI_MANIFEST, MANIFEST_BODY)
    mock.expect("PUT", MANIFEST_PATH, status=500)
    mock.expect(
        "PUT", MANIFEST_PATH, status=201, headers={"Docker-Content-Digest": manifest.digest}
    )
    assert mock.client(retry=FAST).put_manifest("library/app", "1.0", manifest) == manifest.digest
    assert [c.body for c in mock.calls] == [MANIFEST_BODY, MANIFEST_BODY]


def test_rejected_manifest_put_is_not_retried(mock: MockRegistry) -> None:
    manifest = RawManifest(OCI_MANIFEST, MANIFEST_BODY)
    mock.expect(
        "PUT", MANIFEST_PATH, status=400, json={"errors": [{"code": "MANIFEST_BLOB_UNKNOWN"}]}
    )
    with pytest.raises(ManifestRejectedError):
        mock.client(retry=FAST).put_manifest("library/app", "1.0", manifest)


def test_transport_error_is_retried(mock: MockRegistry) -> None:
    mock.expect("GET", "/v2/", raises=httpx.ConnectError("refused"))
    mock.expect("GET", "/v2/", raises=httpx.ReadTimeout("slow"))
    mock.expect("GET", "/v2/")
    mock.client(retry=FAST).ping()
