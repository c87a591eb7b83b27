"""Shared by the zoo tests: the registry behind a profile, and one CLI mirror run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.conftest import CliRunner
from tests.reliability.helpers import CliRun, write_document
from tests.support.registry_server import RegistryServer
from tests.support.zoo import profile

__all__ = ["mirror", "upstream_for"]


def upstream_for(name: str, request: pytest.FixtureRequest) -> RegistryServer:
    """The session registry with the auth profile `name`'s real registry uses."""
    flavour = profile(name).flavour
    fixture = {"token": "registry_token", "htpasswd": "registry_htpasswd"}[flavour]
    server: RegistryServer = request.getfixturevalue(fixture)
    return server


def mirror(cli: CliRunner, images: dict[str, Any], auth: dict[str, Any]) -> CliRun:
    """Run the CLI once on these images and auth documents (4 workers)."""
    images_file = write_document(cli.tmp_path / "images.yaml", images)
    auth_file = write_document(cli.tmp_path / "auth.yaml", auth)
    return cli(["--images", str(images_file), "--auth", str(auth_file), "--proc", "4"])
