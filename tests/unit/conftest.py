"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer_core.config import DockerConfig


@pytest.fixture
def no_docker(tmp_path: Path) -> DockerConfig:
    """A docker config.json fallback that finds nothing (the file does not exist)."""
    return DockerConfig(tmp_path / "no-docker-config.json", env={})
