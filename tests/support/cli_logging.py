"""Logging support for running the CLI in-process under pytest's output capture."""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["CurrentStderr", "prefect_console_follows_stderr"]


class CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time (pytest swaps it per test)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def prefect_console_follows_stderr() -> None:
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
