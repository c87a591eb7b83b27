"""Configuration files: `--auth`, `--images` and the legacy `--config`.

One loader (`files.load_document`) reads YAML or JSON by suffix and refuses
duplicate keys; each file format is a small pydantic model on top. Every
problem is a `ConfigError` (or `RuleError` for one images entry) that names
the file and key and never contains a secret, raised before any network
traffic. Runtime knobs (`--proc`, `--retries`, ...) live in `settings.py`.
"""

from __future__ import annotations

from syncer_core.config.credentials import (
    AuthConfig,
    AuthEntry,
    AuthFile,
    load_auth_file,
    normalise_auth_key,
    parse_auth_section,
)
from syncer_core.config.dockerconfig import DockerConfig, run_credential_helper
from syncer_core.config.files import expand_env, load_document
from syncer_core.config.legacy import LegacyConfig, ignored_flags, load_legacy_config
from syncer_core.config.rules import (
    RuleSet,
    SourceSpec,
    SyncRule,
    TargetSpec,
    build_rules,
    load_images_file,
    parse_destination,
    parse_source,
    resolve_default_registry,
)

__all__ = [
    "AuthConfig",
    "AuthEntry",
    "AuthFile",
    "DockerConfig",
    "LegacyConfig",
    "RuleSet",
    "SourceSpec",
    "SyncRule",
    "TargetSpec",
    "build_rules",
    "expand_env",
    "ignored_flags",
    "load_auth_file",
    "load_document",
    "load_images_file",
    "load_legacy_config",
    "normalise_auth_key",
    "parse_auth_section",
    "parse_destination",
    "parse_source",
    "resolve_default_registry",
    "run_credential_helper",
]
