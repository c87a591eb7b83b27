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
    # The embedded API can take well over Prefect's 20 s default to start on a
    # busy 2-core machine; failing the whole run for that helps nobody.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def apply_defaults() -> None:
    """Set each default unless the user already set that variable."""
    for name, value in _DEFAULTS.items():
        os.environ.setdefault(name, value)
