"""The mapping form of an images-file value: `to`, tag filters, `referrers` and `prune`.

```yaml
quay.io/coreos/etcd:
  to: registry.local/mirror/etcd   # required: a destination string or a list, as the plain value
  exclude: ["-rc", "alpha"]        # regexes (search semantics); matching tags are dropped
  semver: ">=3.4, <4"              # keep tags that parse as semver in the range
  latest: 5                        # of what is left, the tags of the 5 highest versions
  referrers: true                  # also copy signatures, attestations and SBOMs
  prune: true                      # delete destination tags that left the selection
```

Filters run after the key's own selection, in the order include (the key),
exclude, semver, latest. Everything is checked here, at load time, so a bad
value fails before any network traffic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from syncer_core.config.files import type_name
from syncer_core.semver import SemverRange, Version, parse_range, parse_version

__all__ = ["MAPPING_FIELDS", "FilterProblem", "RuleMapping", "TagFilters", "parse_rule_mapping"]

#: The fields the mapping form accepts.
MAPPING_FIELDS = ("to", "exclude", "semver", "latest", "referrers", "prune")
_MAX_REGEX_LENGTH = 1000


class FilterProblem(Exception):
    """A bad mapping-form value; `rules.py` wraps it in a `RuleError` naming file and key."""


class TagFilters(BaseModel):
    """exclude → semver → latest, applied to the tags the key selected.

    Attributes:
        exclude: compiled regexes; a tag any of them `search`es is dropped.
        semver: keep only tags that parse as versions inside this range.
        latest: keep the tags of the N highest versions (unparsable tags dropped).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    exclude: tuple[re.Pattern[str], ...] = ()
    semver: SemverRange | None = None
    latest: int | None = None

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return bool(self.exclude) or self.semver is not None or self.latest is not None

    def apply(self, tags: Iterable[str]) -> list[str]:
        """Filter `tags`, keeping their order."""
        kept = [t for t in tags if not any(p.search(t) for p in self.exclude)]
        if self.semver is not None:
            kept = [t for t in kept if self.semver.matches_tag(t)]
        if self.latest is not None:
            kept = _latest(kept, self.latest)
        return kept


def _latest(tags: list[str], count: int) -> list[str]:
    """Tags of the `count` highest versions; `v1.0.0` and `1.0.0_b1` are one version."""
    versions: dict[str, Version] = {}
    for tag in tags:
        version = parse_version(tag)
        if version is not None:
            versions[tag] = version
    highest = set(sorted(set(versions.values()), reverse=True)[:count])
    return [tag for tag in tags if tag in versions and versions[tag] in highest]


class RuleMapping(BaseModel):
    """A parsed mapping-form value.

    Attributes:
        to: the destination value (string, list or null), read like a plain value.
        filters: the tag filters.
        referrers: copy what refers to each copied image.
        prune: delete destination tags that left the selection.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    to: Any
    filters: TagFilters = TagFilters()
    referrers: bool = False
    prune: bool = False


def _patterns(value: Any) -> tuple[re.Pattern[str], ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise FilterProblem(
            f"exclude: must be a regex or a list of regexes, got {type_name(value)}"
        )
    patterns = []
    for index, item in enumerate(items):
        where = f"exclude[{index}]" if isinstance(value, list) else "exclude"
        if not isinstance(item, str):
            raise FilterProblem(
                f"{where}: must be a string (quote it in YAML), got {type_name(item)}"
            )
        if not item:
            raise FilterProblem(f"{where}: an empty regex would drop every tag")
        if len(item) > _MAX_REGEX_LENGTH:
            raise FilterProblem(f"{where}: regex longer than {_MAX_REGEX_LENGTH} characters")
        try:
            patterns.append(re.compile(item))
        except (re.error, OverflowError, RecursionError, ValueError) as exc:
            raise FilterProblem(f"{where}: invalid regex /{item}/: {exc}") from None
    return tuple(patterns)


def _semver(value: Any) -> SemverRange:
    if not isinstance(value, str):
        raise FilterProblem(
            f"semver: must be a range string such as '>=1.2, <2' (quote it in YAML), "
            f"got {type_name(value)}"
        )
    try:
        return parse_range(value)
    except ValueError as exc:
        raise FilterProblem(f"semver: invalid range {value!r}: {exc}") from None


def _latest_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterProblem(f"latest: must be a whole number of versions, got {type_name(value)}")
    if value < 1:
        raise FilterProblem(f"latest: must be at least 1, got {value}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise FilterProblem(f"{name}: must be true or false, got {type_name(value)}")
    return value


def parse_rule_mapping(value: Mapping[Any, Any]) -> RuleMapping:
    """Read a mapping-form value (see the module docstring).

    Raises:
        FilterProblem: an unknown or missing field, or a bad value, named.
    """
    for name in value:
        if name not in MAPPING_FIELDS:
            raise FilterProblem(
                f"unknown field {str(name)!r} (allowed: {', '.join(MAPPING_FIELDS)})"
            )
    if "to" not in value:
        raise FilterProblem("the mapping form needs 'to': the destination(s)")
    filters = TagFilters(
        exclude=_patterns(value["exclude"]) if "exclude" in value else (),
        semver=_semver(value["semver"]) if "semver" in value else None,
        latest=_latest_count(value["latest"]) if "latest" in value else None,
    )
    return RuleMapping(
        to=value["to"],
        filters=filters,
        referrers=_flag(value.get("referrers", False), "referrers"),
        prune=_flag(value.get("prune", False), "prune"),
    )
