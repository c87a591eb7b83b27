"""Fixtures of the flow tier: a temporary Prefect API, fresh registries, the CLI run in-process.

Only tests under `tests/flows` can request these. Only the tests that run
flows (`sync`) request the session's Prefect harness (`prefect_api`, from
`tests/conftest.py`); the other tests never pay for it. Each test gets its own
source and destination registries, so their access logs hold exactly the
requests of that test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.flows.helpers import Syncer
from tests.support.cli_logging import CurrentStderr
from tests.support.registry_server import Flavour, RegistryServer


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
    monkeypatch.setattr(logging.getLogger("image_syncer"), "handlers", [CurrentStderr()])
    return Syncer(tmp_path, capsys, src, dst)
