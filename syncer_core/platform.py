"""Platform filters (`--os`, `--arch`) and the index rewrite they force.

Semantics (image-syncer's, with its bugs fixed): a platform passes when some
OS pattern matches (or none is given) and some architecture pattern matches
(or none is given). A pattern `x` matches the value `x` whatever the
secondary field; `x:y` also requires the secondary field to equal `y`
(`os.version` for OS, `variant` for architecture). Flags are repeatable and
comma-separated. Entries without a platform, or `unknown/unknown`
(attestations), pass only when no filter is set.

Filtering an index keeps the original bytes when nothing is removed, so the
digest is preserved; otherwise a new index with just the kept descriptors is
built, and its digest differs from the source's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from syncer_core.errors import ConfigError
from syncer_core.manifest import ImageIndex, Platform, RawManifest

__all__ = ["PlatformFilter", "filter_index"]

_PATTERN_RE = re.compile(r"^[A-Za-z0-9._-]+(?::[A-Za-z0-9._-]+)?$")


def _split(values: Iterable[str], flag: str) -> tuple[str, ...]:
    patterns: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if not _PATTERN_RE.match(item):
                raise ConfigError(
                    f"invalid pattern {item!r}: expected NAME or NAME:SECONDARY", file=flag
                )
            if item not in patterns:
                patterns.append(item)
    return tuple(patterns)


def _matches(patterns: tuple[str, ...], value: str, secondary: str | None) -> bool:
    if not patterns:
        return True
    for pattern in patterns:
        name, _, second = pattern.partition(":")
        if name == value and (not second or second == (secondary or "")):
            return True
    return False


@dataclass(frozen=True)
class PlatformFilter:
    """OS and architecture patterns; empty means "everything"."""

    os_patterns: tuple[str, ...] = ()
    arch_patterns: tuple[str, ...] = ()

    @classmethod
    def from_flags(
        cls, os_values: Iterable[str] = (), arch_values: Iterable[str] = ()
    ) -> PlatformFilter:
        """Build from repeatable, comma-separated `--os` / `--arch` values.

        Raises:
            ConfigError: a pattern is malformed (names the flag).
        """
        return cls(_split(os_values, "--os"), _split(arch_values, "--arch"))

    @property
    def active(self) -> bool:
        """Whether any pattern is set."""
        return bool(self.os_patterns or self.arch_patterns)

    def matches(self, platform: Platform | None) -> bool:
        """Tell whether an image of this platform is to be copied."""
        if not self.active:
            return True
        if platform is None or not platform.os or platform.os == "unknown":
            return False
        return _matches(self.os_patterns, platform.os, platform.os_version) and _matches(
            self.arch_patterns, platform.architecture, platform.variant
        )

    def __str__(self) -> str:
        parts = []
        if self.os_patterns:
            parts.append("os=" + ",".join(self.os_patterns))
        if self.arch_patterns:
            parts.append("arch=" + ",".join(self.arch_patterns))
        return " ".join(parts) or "all platforms"


def filter_index(index: RawManifest, platforms: PlatformFilter) -> RawManifest | None:
    """Apply a filter to a manifest list / OCI index.

    Returns:
        The original manifest (same bytes, same digest) when every entry is
        kept; a rewritten index holding only the kept entries otherwise; None
        when no entry is kept.
    """
    parsed = index.parsed
    assert isinstance(parsed, ImageIndex)
    keep = [platforms.matches(d.platform) for d in parsed.manifests]
    if all(keep):
        return index
    if not any(keep):
        return None
    doc = json.loads(index.data)
    doc["manifests"] = [entry for entry, kept in zip(doc["manifests"], keep, strict=True) if kept]
    return RawManifest.from_document(doc, index.media_type)
