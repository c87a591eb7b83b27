"""The deprecated `--config` file: `auth:` and `images:` sections in one file.

Same semantics as the separate files (behaviour spec §4), except that we also
expand `${VAR}` in credentials (the original forgot to). Unknown top-level
sections are an error, so a typo such as `image:` cannot silently sync nothing.
When `--config` is given, `--auth` and `--images` are ignored;
`ignored_flags` tells the CLI which ones to warn about.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncer_core.config.credentials import AuthConfig, parse_auth_section
from syncer_core.config.dockerconfig import DockerConfig
from syncer_core.config.files import load_document, type_name
from syncer_core.config.rules import RuleSet, build_rules
from syncer_core.errors import ConfigError

__all__ = ["LegacyConfig", "ignored_flags", "load_legacy_config"]

_SECTIONS = ("auth", "images")


@dataclass(frozen=True)
class LegacyConfig:
    """Both halves of a legacy config file.

    Attributes:
        file: the file they came from.
        auth: the credentials (`auth:` section; empty if absent).
        images: the rules (`images:` section; empty if absent).
    """

    file: str
    auth: AuthConfig
    images: RuleSet


def _section(data: Mapping[str, Any], name: str, file: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"section must be a mapping, got {type_name(value)}", file=file, key=name)
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(
                f"keys must be strings, got {type_name(key)} (quote it)",
                file=file,
                key=f"{name}.{key}",
            )
    return value


def load_legacy_config(
    path: str | os.PathLike[str],
    *,
    default_registry: str | None = None,
    env: Mapping[str, str] | None = None,
    docker_config: DockerConfig | None = None,
    use_docker_config: bool = True,
) -> LegacyConfig:
    """Load a legacy `--config` file (YAML or JSON by suffix).

    Args:
        path: the config file.
        default_registry: the `--registry` flag value, if given.
        env: environment for expansion and `DEFAULT_REGISTRY`; defaults to
            `os.environ`.
        docker_config: the config.json fallback; defaults to docker's own.
        use_docker_config: False disables the config.json fallback.

    Returns:
        The auth config and rules.

    Raises:
        ConfigError: unreadable/malformed file, unknown section, bad entry.
        RuleError: a bad `images:` entry (file and key named).
    """
    file = str(path)
    environ = dict(os.environ if env is None else env)
    data = load_document(path)
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError("unknown section (allowed: auth, images)", file=file, key=key)
    if docker_config is None and use_docker_config:
        docker_config = DockerConfig.from_env(environ)
    auth = parse_auth_section(
        _section(data, "auth", file),
        file=file,
        env=environ,
        base_dir=Path(path).parent,
        docker_config=docker_config,
    )
    images = build_rules(
        _section(data, "images", file),
        file=file,
        default_registry=default_registry,
        env=environ,
    )
    return LegacyConfig(file=file, auth=auth, images=images)


def ignored_flags(config: str | None, auth: str | None, images: str | None) -> list[str]:
    """Name the flags that `--config` overrides, so the CLI can warn about them.

    Args:
        config: the `--config` value (None or "" when not given).
        auth: the `--auth` value.
        images: the `--images` value.

    Returns:
        `["--auth"]`, `["--images"]`, both, or `[]`.
    """
    if not config:
        return []
    return [flag for flag, value in (("--auth", auth), ("--images", images)) if value]
