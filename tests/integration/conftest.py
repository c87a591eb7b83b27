"""Fixtures shared by the integration tests; the registries come from `tests/conftest.py`."""

from __future__ import annotations

import pytest

from tests.support.registry_server import FLAVOURS, RegistryServer


@pytest.fixture(params=FLAVOURS)
def server(request: pytest.FixtureRequest) -> RegistryServer:
    """Each registry flavour in turn (session-scoped instances)."""
    server: RegistryServer = request.getfixturevalue(f"registry_{request.param}")
    return server
