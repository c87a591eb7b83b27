"""Helpers shared by the unit tests: the modules of the core, and config files on disk."""

from __future__ import annotations

import json
import pkgutil
from pathlib import Path

import yaml

import syncer_core


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while walking syncer_core")


def core_module_names() -> list[str]:
    """Every module and package under `syncer_core`, found on disk, sorted."""
    walked = pkgutil.walk_packages(syncer_core.__path__, "syncer_core.", onerror=_raise)
    return sorted(["syncer_core", *(info.name for info in walked)])


def write_data(directory: Path, data: object, fmt: str, name: str) -> Path:
    """Write `data` as `directory/name.fmt` (`fmt`: `yaml` or `json`)."""
    path = directory / f"{name}.{fmt}"
    text = json.dumps(data) if fmt == "json" else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def write_config(directory: Path, config: object) -> Path:
    """Write docker's `config.json` into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path
