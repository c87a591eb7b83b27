"""Small helpers shared by the integration tests (fixtures live in `conftest.py`)."""

from __future__ import annotations

import uuid

__all__ = ["unique"]


def unique(prefix: str) -> str:
    """A repository name no other test (or earlier run on the same registry) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
