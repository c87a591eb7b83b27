"""Shared fixtures: a clean environment, real `docker-registry` instances, a Prefect API.

The logic lives in `tests/support`; this file only wires it into pytest.
Registries are stopped by their own PIDs at teardown, also when tests fail.
Prefect's client services are stopped after every test (`prefect_services_stopped`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.support.certs import CertPaths, generate_certs
from tests.support.cli_logging import prefect_console_follows_stderr
from tests.support.registry_server import Flavour, RegistryServer, running_registry

_ENV_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)
_REGISTRY_FIXTURES = frozenset(
    {
        "registry_plain",
        "registry_plain2",
        "registry_htpasswd",
        "registry_tls",
        "registry_token",
        "fresh_registry",
    }
)


#: Seconds to let Prefect deliver what a test's runs still queue before stopping its services.
_DRAIN_TIMEOUT = 60.0
#: Threads of Prefect's queue services (`f"{type(service).__name__}Thread"`), alive
#: exactly while a service runs.
_PREFECT_SERVICE_THREADS = frozenset({"EventsWorkerThread", "APILogWorkerThread"})


@pytest.fixture(autouse=True)
def prefect_services_stopped() -> Iterator[None]:
    """Stop Prefect's client services after each test, as the end of a CLI process does.

    A flow run against a `PREFECT_API_URL` (the session's harness, the deployment
    tier's server) starts Prefect's `EventsWorker`, which outlives the run in this
    process: its websocket to the server stays open and is pinged from Prefect's
    loop thread (keepalive every 20 s, time-based event checkpoints), and every
    ping draws `random.getrandbits(32)` from the global `random`. Hypothesis
    treats any change of the global random state while it draws examples as a
    strategy using `random`, so a ping during a later fuzz test failed it as
    flaky (`HypothesisDeprecationWarning`, an error here). A real CLI process
    drains these services at exit; a test that ran one in-process does it here.
    """
    yield
    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for service in (EventsWorker, APILogWorker):
            service.drain_all(timeout=_DRAIN_TIMEOUT)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A Hypothesis test starts only when no Prefect service is left running.

    Such a service draws from the global `random` in the background (see
    `prefect_services_stopped`), which makes Hypothesis fail at random. Failing
    here names the leak at once, whatever the timing of the pings.
    """
    if not getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        return
    leftovers = [t for t in threading.enumerate() if t.name in _PREFECT_SERVICE_THREADS]
    deadline = time.monotonic() + 5.0
    for thread in leftovers:  # a drained service's thread ends just after the drain
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    running = sorted(t.name for t in leftovers if t.is_alive())
    if running:
        pytest.fail(
            f"Prefect services still running before a Hypothesis test: {', '.join(running)}; "
            "a fixture that runs flows must let `prefect_services_stopped` drain them "
            "(their websocket pings use the global `random`, which Hypothesis reports "
            "as a flaky strategy)",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy and CA settings of the host must not leak into any test."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using a registry fixture get the `registry` marker even if they forgot it."""
    for item in items:
        if _REGISTRY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)


@pytest.fixture(scope="session")
def registry_certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    """One CA, TLS server certificate and token signer for the whole session."""
    return generate_certs(tmp_path_factory.mktemp("certs"))


def _session_registry(
    flavour: Flavour, tmp_path_factory: pytest.TempPathFactory, certs: CertPaths
) -> Iterator[RegistryServer]:
    with running_registry(
        flavour, tmp_path_factory.mktemp(f"registry-{flavour}"), certs=certs
    ) as s:
        yield s


@pytest.fixture(scope="session")
def registry_plain(
    tmp_path_factory: pytest.TempPathFactory, registry_certs: CertPaths
) -> Iterator[RegistryServer]:
    """Plain-HTTP registry without auth."""
    yield from _session_registry("plain", tmp_path_factory, registry_certs)


@pytest.fixture(scope="session")
def registry_plain2(
    tmp_path_factory: pytest.TempPathFactory, registry_certs: CertPaths
) -> Iterator[RegistryServer]:
    """A second, independent plain registry (cross-registry copies)."""
    yield from _session_registry("plain", tmp_path_factory, registry_certs)


@pytest.fixture(scope="session")
def registry_htpasswd(
    tmp_path_factory: pytest.TempPathFactory, registry_certs: CertPaths
) -> Iterator[RegistryServer]:
    """Plain-HTTP registry with bcrypt htpasswd Basic auth (`.username`/`.password`)."""
    yield from _session_registry("htpasswd", tmp_path_factory, registry_certs)


@pytest.fixture(scope="session")
def registry_tls(
    tmp_path_factory: pytest.TempPathFactory, registry_certs: CertPaths
) -> Iterator[RegistryServer]:
    """HTTPS registry with a certificate from the test CA (`.ca_file`)."""
    yield from _session_registry("tls", tmp_path_factory, registry_certs)


@pytest.fixture(scope="session")
def registry_token(
    tmp_path_factory: pytest.TempPathFactory, registry_certs: CertPaths
) -> Iterator[RegistryServer]:
    """Plain-HTTP registry with Bearer token auth (`.token_server`)."""
    yield from _session_registry("token", tmp_path_factory, registry_certs)


@pytest.fixture
def fresh_registry(
    tmp_path_factory: pytest.TempPathFactory, registry_certs: CertPaths
) -> Iterator[Callable[..., RegistryServer]]:
    """Factory `make_registry(flavour, **options)` of throw-away registries, stopped at teardown.

    `options` are `RegistryServer` keywords, e.g. `schema1=True`.
    """
    with ExitStack() as stack:

        def make_registry(flavour: Flavour = "plain", **options: Any) -> RegistryServer:
            workdir = tmp_path_factory.mktemp(f"fresh-{flavour}")
            return stack.enter_context(
                running_registry(flavour, workdir, certs=registry_certs, **options)
            )

        yield make_registry


#: Tries at starting Prefect's temporary API server (`_prefect_harness`).
_HARNESS_ATTEMPTS = 3


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect API and database, started at most once per session.

    Session-scoped, and requested only by the flow-running tiers (the `sync`
    fixture of `tests/flows`, the `cli` fixture of `tests/reliability`), so one
    harness server serves both and a run without them never starts it.
    `tests/deployments` never requests it: it runs its own real Prefect server
    and points the test process at it through the environment. Once started,
    the harness stays up until the session ends.
    """
    # Importing the CLI applies its environment defaults (no telemetry) before
    # the harness starts its server; importing the flow imports Prefect, which
    # sets up its logging, so the console handlers exist to be redirected.
    import flows.cli
    import flows.sync  # noqa: F401

    prefect_console_follows_stderr()
    yield from _prefect_harness()


def _prefect_harness() -> Iterator[None]:
    """Run inside `prefect_test_harness`, started again on a new port when a start fails.

    Prefect's start-up wait (`SubprocessASGIServer.start`) tolerates only a
    refused connection while it polls `/api/health`: on a loaded machine a
    health request that takes longer than httpx's default 5 s (the fresh
    server starved of CPU) raises `ReadTimeout` at once, and a port taken by
    another process between Prefect's `bind(0)` probe and uvicorn's bind
    makes uvicorn exit while the wait polls whatever holds the port. Either
    failed this session fixture, and pytest re-raised that one error at the
    setup of every later test that runs flows. A start that fails, or whose
    server process is not the one alive, is stopped and tried again.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import prefect_test_harness

    for attempt in range(1, _HARNESS_ATTEMPTS + 1):
        with ExitStack() as stack:
            try:
                stack.enter_context(prefect_test_harness(server_startup_timeout=60))
            except (RuntimeError, httpx.HTTPError) as exc:
                failed = SubprocessASGIServer._instances.get(None)  # registered before start
                if failed is not None:
                    failed.stop()  # its process may still be starting: do not leak it
                if attempt == _HARNESS_ATTEMPTS:
                    raise
                sys.stderr.write(f"Prefect test harness start {attempt} failed: {exc!r}\n")
                continue
            server = SubprocessASGIServer._instances.get(None)
            process = getattr(server, "server_process", None)
            if process is not None and process.poll() is None:
                yield
                return
            # Our uvicorn exited (its port was taken), yet something answered the
            # health check: another session's server. Leave it and start anew.
            sys.stderr.write(f"Prefect test harness start {attempt}: server process exited\n")
    raise RuntimeError(f"Prefect's test harness did not start in {_HARNESS_ATTEMPTS} tries")
