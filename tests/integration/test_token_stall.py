"""A token service that accepts connections and never answers must not hang the run.

The token request is yielded by the auth flow; it must carry the client's
timeouts like every other request, so a stalled realm becomes a timeout,
is retried like one, and fails the image by name within timeouts x retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from syncer_core.plan import SyncJob
from syncer_core.reference import Reference
from syncer_core.registry import ClientOptions, RegistryAccess, RetryPolicy
from syncer_core.sync.engine import run_jobs
from syncer_core.sync.results import ImageResult, ImageStatus
from syncer_core.sync.session import SyncSession
from tests.integration.helpers import unique
from tests.support.images import build_image, push_image
from tests.support.registry_server import RegistryServer, access_for
from tests.support.slow_sockets import StalledServer
from tests.support.sync_helpers import registry_client

pytestmark = [pytest.mark.registry]

READ_TIMEOUT = 1.0
RETRY = RetryPolicy(attempts=3, base_delay=0.2, max_delay=0.4, jitter=0.0)
#: Every attempt waits one read timeout; the backoffs between them are 0.2 + 0.4 s.
BOUND = RETRY.attempts * READ_TIMEOUT + 0.6
#: What a hang would exceed: the bound plus generous slack for a loaded machine.
HANG = BOUND + 20.0


@pytest.fixture
def stalled() -> Iterator[StalledServer]:
    with StalledServer() as server:
        yield server  # type: ignore[misc]


def _run_in_thread(work: Callable[[], list[ImageResult]]) -> tuple[list[ImageResult], float]:
    """Run `work`, failing (not hanging) the test if it does not end within HANG seconds."""
    found: list[list[ImageResult]] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: found.append(work()), daemon=True)
    thread.start()
    thread.join(HANG)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"the run still hangs on the stalled token service after {HANG}s"
    return found[0], elapsed


def test_a_stalled_token_service_fails_the_image_within_timeouts_times_retries(
    fresh_registry: Callable[..., RegistryServer], stalled: StalledServer
) -> None:
    src = fresh_registry("plain")
    dst = fresh_registry("token", token_realm=stalled.url)
    repo = unique("stall/app")
    image = build_image(1500, layer_sizes=(512,))
    with registry_client(src) as client:
        push_image(client, repo, "v1", image)
    accesses = {src.host: access_for(src), dst.host: access_for(dst)}

    def lookup(reference: Reference) -> RegistryAccess:
        return accesses[reference.registry]

    session = SyncSession(
        lookup, client_options=ClientOptions(read_timeout=READ_TIMEOUT), retry=RETRY
    )
    job = SyncJob(
        source=Reference.parse(f"{src.host}/{repo}:v1"),
        target=Reference.parse(f"{dst.host}/{repo}:v1"),
        rule="stall",
    )
    try:
        results, elapsed = _run_in_thread(lambda: run_jobs(session, [job]))
    finally:
        stalled.stop()  # releases a hung request, so the session can close
        session.close()

    [result] = results
    assert result.status is ImageStatus.FAILED
    assert result.target == str(job.target)
    assert "TransientRegistryError" in result.reason and "timeout" in result.reason.lower()
    assert elapsed <= BOUND + 5.0, f"took {elapsed:.1f}s, bound {BOUND:.1f}s"
    assert stalled.connections == RETRY.attempts  # one stalled token request per attempt
