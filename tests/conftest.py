"""Shared fixtures: a clean environment, real `docker-registry` instances, a Prefect API.

The logic lives in `tests/support`; this file only wires it into pytest.
Registries are stopped by their own PIDs at teardown, also when tests fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

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
    from prefect.testing.utilities import prefect_test_harness

    # Importing the CLI applies its environment defaults (no telemetry) before
    # the harness starts its server; importing the flow imports Prefect, which
    # sets up its logging, so the console handlers exist to be redirected.
    import flows.cli
    import flows.sync  # noqa: F401

    prefect_console_follows_stderr()
    with prefect_test_harness(server_startup_timeout=60):
        yield
