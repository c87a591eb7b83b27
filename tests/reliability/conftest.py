"""Fixtures of the reliability tier: fault proxies, the CLI in-process, a temporary Prefect API.

The session's Prefect harness (`prefect_api`, from `tests/conftest.py`) is
requested only by tests that run flows (`cli`); the bad-input tests
(`config_cli`) never pay for it. Every proxy a test starts is stopped at
teardown, also when the test fails.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.helpers import CliRun
from tests.support.cli_logging import CurrentStderr
from tests.support.registry_server import RegistryServer
from tests.support.zoo import FaultProxy

#: Loggers the CLI attaches its `--log` file handler to.
_LOG_TARGETS = ("image_syncer", "prefect.flow_runs", "prefect.task_runs")

ProxyFactory = Callable[..., FaultProxy]


@pytest.fixture
def proxies() -> Iterator[ProxyFactory]:
    """`make_proxy(server_or_host, **options)`: started `FaultProxy`s, stopped at teardown."""
    with ExitStack() as stack:

        def make_proxy(upstream: RegistryServer | str, **options: Any) -> FaultProxy:
            host = upstream.host if isinstance(upstream, RegistryServer) else upstream
            return stack.enter_context(FaultProxy(host, **options))

        yield make_proxy


class CliRunner:
    """Run `flows.cli.main` in this process and capture what it prints."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
        self.tmp_path = tmp_path
        self.capsys = capsys
        self.runs = 0

    def __call__(self, args: Sequence[str], *, report: bool = True) -> CliRun:
        """Run with `args` (plus `--report FILE` unless `report=False`)."""
        from flows.cli import main

        self.runs += 1
        path = self.tmp_path / f"report-{self.runs}.json"
        argv = [*args, "--report", str(path)] if report else list(args)
        self.capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
        out = self.capsys.readouterr()
        parsed = json.loads(path.read_text()) if path.exists() else None
        return CliRun(code, out.out, out.err, parsed)


def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir(exist_ok=True)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.delenv("DEFAULT_REGISTRY", raising=False)
    # The CLI adds a stderr handler only if none exists; one bound to an earlier
    # test's captured stream would write into a closed file. Its `--log` file
    # handlers are dropped (and closed) after the test the same way.
    monkeypatch.setattr(logging.getLogger("image_syncer"), "handlers", [CurrentStderr()])
    for name in _LOG_TARGETS[1:]:
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))


@pytest.fixture
def config_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    """The CLI for runs that must stop before any flow starts (no Prefect API needed)."""
    _isolate(tmp_path, monkeypatch)
    yield CliRunner(tmp_path, capsys)
    _close_log_files()


@pytest.fixture
def cli(
    prefect_api: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[CliRunner]:
    """The CLI, in-process, against the session's temporary Prefect API."""
    _isolate(tmp_path, monkeypatch)
    yield CliRunner(tmp_path, capsys)
    _close_log_files()


def _close_log_files() -> None:
    for name in _LOG_TARGETS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler):
                handler.close()
