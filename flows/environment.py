"""Environment defaults applied before Prefect is imported.

No usage reporting (this tool runs in private networks), and no telemetry
job hammering the embedded SQLite database. Users' own settings win.
"""

from __future__ import annotations

import os

__all__ = ["apply_defaults"]

_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def apply_defaults() -> None:
    """Set each default unless the user already set that variable."""
    for name, value in _DEFAULTS.items():
        os.environ.setdefault(name, value)
