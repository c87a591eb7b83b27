"""Fixtures of the flow tier: a temporary Prefect API, fresh registries, the CLI run in-process.

Only tests under `tests/flows` can request these, and only the tests that run
flows start the Prefect harness (once, for this package); the other tiers
never pay for it. Each test gets its own source and destination registries,
so their access logs hold exactly the requests of that test.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.flows.helpers import Syncer
from tests.support.registry_server import Flavour, RegistryServer


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time (pytest swaps it per test)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _prefect_console_follows_stderr() -> None:
    """Make Prefect's console handlers write to `sys.stderr` as it is at each write.

    They bind the stream of the moment Prefect is first imported; if that was
    inside a test using `capsys`, the stream is closed once that test ends.
    """
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, PrefectConsoleHandler):
                handler.console.file = None  # type: ignore[assignment]  # rich: "use sys.stderr"
                handler.console.stderr = True


@pytest.fixture(scope="package")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect API and database, started once for the flow tier.

    Package scope: torn down when the last test of `tests/flows` is done, so
    flows run by later tiers never report to it.
    """
    from prefect.testing.utilities import prefect_test_harness

    # Importing the CLI applies its environment defaults (no telemetry) before
    # the harness starts its server; importing the flow imports Prefect, which
    # sets up its logging, so the console handlers exist to be redirected.
    import flows.cli
    import flows.sync  # noqa: F401

    _prefect_console_follows_stderr()
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def src(fresh_registry: Callable[[Flavour], RegistryServer]) -> RegistryServer:
    """A fresh plain-HTTP source registry."""
    return fresh_registry("plain")


@pytest.fixture
def dst(fresh_registry: Callable[[Flavour], RegistryServer]) -> RegistryServer:
    """A fresh plain-HTTP destination registry."""
    return fresh_registry("plain")


@pytest.fixture
def sync(
    prefect_api: None,
    src: RegistryServer,
    dst: RegistryServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Syncer:
    """Run image-syncer against `src` and `dst` (add more to `.registries`)."""
    # No docker config.json of the machine may supply credentials.
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.delenv("DEFAULT_REGISTRY", raising=False)
    # The CLI adds a stderr handler only if none exists; one bound to an earlier
    # test's captured stream would write into a closed file.
    monkeypatch.setattr(logging.getLogger("image_syncer"), "handlers", [_CurrentStderr()])
    return Syncer(tmp_path, capsys, src, dst)
