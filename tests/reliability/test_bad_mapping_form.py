"""Bad mapping-form values (and `--prune` conflicts) exit 2 before any connection.

Every file names a fault proxy as its registry; a single connection from the
CLI would show in its counters. Each case is written as YAML, as JSON and
inside a legacy `--config`, and its one error line must name the file, the
source key and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.reliability.conftest import CliRunner
from tests.support.zoo import FaultProxy

D1 = "sha256:" + "1" * 64
KEY = "{P}/team/app"


@pytest.fixture(scope="module")
def trap() -> Iterator[FaultProxy]:
    """A proxy nothing may connect to (its upstream does not even exist)."""
    with FaultProxy("127.0.0.1:9") as proxy:
        yield proxy


# (id, images mapping with {P} for the proxy, extra flags, key named, fragment)
CASES: list[tuple[str, dict[str, Any], tuple[str, ...], str, str]] = [
    ("unknown-field", {KEY: {"to": "{P}/m/app", "tag": "v1"}}, (), KEY, "unknown field 'tag'"),
    ("to-missing", {KEY: {"semver": ">=1"}}, (), KEY, "needs 'to'"),
    ("to-number", {KEY: {"to": 7}}, (), KEY, "got a number"),
    ("to-empty-list", {KEY: {"to": []}}, (), KEY, "destination list is empty"),
    ("to-bad-reference", {KEY: {"to": "{P}/M/App"}}, (), KEY, "invalid destination"),
    ("exclude-number", {KEY: {"to": "{P}/m/app", "exclude": 1}}, (), KEY, "exclude: must be"),
    ("exclude-bad-regex", {KEY: {"to": "{P}/m/app", "exclude": ["[a"]}}, (), KEY,
     "exclude[0]: invalid regex"),
    ("exclude-empty", {KEY: {"to": "{P}/m/app", "exclude": [""]}}, (), KEY, "empty regex"),
    ("semver-number", {KEY: {"to": "{P}/m/app", "semver": 1}}, (), KEY, "semver: must be"),
    ("semver-bad", {KEY: {"to": "{P}/m/app", "semver": ">=1.x"}}, (), KEY, "invalid range"),
    ("semver-or", {KEY: {"to": "{P}/m/app", "semver": "1 || 2"}}, (), KEY, "invalid range"),
    ("semver-empty", {KEY: {"to": "{P}/m/app", "semver": " "}}, (), KEY, "range is empty"),
    ("latest-zero", {KEY: {"to": "{P}/m/app", "latest": 0}}, (), KEY, "at least 1"),
    ("latest-negative", {KEY: {"to": "{P}/m/app", "latest": -1}}, (), KEY, "at least 1"),
    ("latest-text", {KEY: {"to": "{P}/m/app", "latest": "all"}}, (), KEY, "whole number"),
    ("latest-on-digest", {f"{KEY}@{D1}": {"to": "{P}/m/app", "latest": 3}}, (), f"{KEY}@{D1}",
     "names the digest"),
    ("semver-on-digest", {f"{KEY}@{D1}": {"to": "{P}/m/app", "semver": ">1"}}, (),
     f"{KEY}@{D1}", "names the digest"),
    ("exclude-on-digest", {f"{KEY}@{D1}": {"to": "{P}/m/app", "exclude": "x"}}, (),
     f"{KEY}@{D1}", "names the digest"),
    ("referrers-text", {KEY: {"to": "{P}/m/app", "referrers": "on"}}, (), KEY, "true or false"),
    ("prune-text", {KEY: {"to": "{P}/m/app", "prune": "yes"}}, (), KEY, "true or false"),
    ("prune-renames", {KEY + ":v1": {"to": "{P}/m/app:v2", "prune": True}}, (), KEY + ":v1",
     "renames tags"),
    ("prune-shared-destination",
     {KEY: {"to": "{P}/m/app", "prune": True}, "{P}/team/other": "{P}/m/app"}, (), KEY,
     "also writes to"),
    ("prune-flag-renames", {KEY + ":v1": "{P}/m/app:v2"}, ("--prune",), KEY + ":v1",
     "--prune (applies to every rule)"),
    ("prune-flag-shared-destination", {KEY: "{P}/m/app", "{P}/team/b": "{P}/m/app"},
     ("--prune",), KEY, "also writes to"),
    ("prune-flag-digest", {f"{KEY}@{D1}": "{P}/m/app"}, ("--prune",), f"{KEY}@{D1}",
     "not tags"),
]  # fmt: skip


def _fill(value: Any, host: str) -> Any:
    if isinstance(value, str):
        return value.replace("{P}", host)
    if isinstance(value, list):
        return [_fill(v, host) for v in value]
    if isinstance(value, dict):
        return {_fill(k, host): _fill(v, host) for k, v in value.items()}
    return value


def _write(path: Path, data: Any) -> Path:
    text = json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


def _argv(form: str, images: dict[str, Any], tmp: Path, host: str) -> tuple[list[str], Path]:
    auth = {host: {"insecure": True}}
    if form == "legacy":
        config = _write(tmp / "config.yaml", {"auth": auth, "images": images})
        return ["--config", str(config)], config
    path = _write(tmp / f"images.{form}", images)
    return ["--images", str(path), "--auth", str(_write(tmp / "auth.yaml", auth))], path


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, f"expected exactly one error line, got:\n{stderr}"
    return lines[0]


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("form", ["yaml", "json", "legacy"])
@pytest.mark.parametrize(
    ("images", "flags", "key", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_bad_mapping_form_exits_2_naming_file_and_key_without_traffic(
    form: str,
    images: dict[str, Any],
    flags: tuple[str, ...],
    key: str,
    fragment: str,
    config_cli: CliRunner,
    trap: FaultProxy,
    tmp_path: Path,
) -> None:
    host = trap.host
    argv, file = _argv(form, _fill(images, host), tmp_path, host)
    before = trap.snapshot().connections

    run = config_cli([*argv, *flags], report=False)

    assert run.code == 2, run.describe()
    line = _error_line(run.stderr)
    assert f"{file}: key {key.replace('{P}', host)!r}: " in line, line
    assert fragment in line, line
    assert run.stdout == ""
    assert trap.snapshot().connections == before == 0
