"""Resolve what one run reads: the auth and rules from `--config` or `--auth` + `--images`.

Shared by the CLI (which validates before anything starts, so bad input
never causes network traffic) and the Prefect flow (which re-reads the same
files inside a deployment's worker, so flow parameters carry paths only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from syncer_core.config import (
    AuthConfig,
    RuleSet,
    ignored_flags,
    load_auth_file,
    load_images_file,
    load_legacy_config,
)
from syncer_core.config.ruleflags import apply_run_flags
from syncer_core.errors import ConfigError

__all__ = ["RunConfig", "load_run_config"]


@dataclass(frozen=True)
class RunConfig:
    """The loaded configuration of one run.

    Attributes:
        auth: credentials lookup (auth file, then docker config.json).
        rules: the image rules in file order.
        ignored_flags: flags `--config` made irrelevant (warn about them).
    """

    auth: AuthConfig
    rules: RuleSet
    ignored_flags: list[str] = field(default_factory=list)


def load_run_config(
    *,
    images: str | None,
    auth: str | None = None,
    config: str | None = None,
    registry: str | None = None,
    env: Mapping[str, str] | None = None,
    prune: bool = False,
    referrers: bool = False,
) -> RunConfig:
    """Load and validate everything a run needs, without touching the network.

    `prune` / `referrers` (the `--prune` / `--referrers` flags) turn the
    option on for every rule, with the same load-time checks.

    Raises:
        ConfigError: naming the file (or flag), the key and the problem.
    """
    if config:
        legacy = load_legacy_config(config, default_registry=registry, env=env)
        rules = apply_run_flags(legacy.images, prune=prune, referrers=referrers)
        return RunConfig(legacy.auth, rules, ignored_flags(config, auth, images))
    if not images:
        raise ConfigError(
            "no images file given: pass --images FILE (or --config FILE)", file="--images"
        )
    auth_config = load_auth_file(auth or None, env=env)
    rules = load_images_file(images, default_registry=registry, env=env)
    return RunConfig(auth_config, apply_run_flags(rules, prune=prune, referrers=referrers))
