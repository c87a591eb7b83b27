"""Semantic versions of image tags, and the ranges the images file's `semver:` filter takes.

Our own small module (no dependency), following semver.org 2.0.0 with the
relaxations tags need:

- a leading `v` or `V` is allowed (`v1.2.3`);
- build metadata is `+meta`, or `_meta` in a tag (a tag cannot hold `+`;
  Helm and other OCI tools write `_` instead); it is ignored for ordering;
- a tag must have all three numbers (`1.2` is not a version); numbers have no
  leading zeros, as semver.org says.

A range is comma-separated comparators that must all hold: `>=`, `>`, `<=`,
`<`, `=`, `!=`, or a bare version (same as `=`). A range version may be
partial: `<4` is `<4.0.0`, `>=3.4` is `>=3.4.0`, and `=3.4` / `3.4` / `!=3.4`
compare only the numbers written (`3.4` matches every `3.4.x`).

Pre-releases follow npm's rule: a version with a pre-release (`4.0.0-rc.1`)
satisfies a range only if it satisfies every comparator *and* some comparator
names a pre-release of the same `major.minor.patch` (`>=4.0.0-rc.0, <5`
admits `4.0.0-rc.1` but not `4.1.0-rc.1`). So ranges never pick up
pre-releases unless they ask for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

__all__ = ["Comparator", "SemverRange", "Version", "parse_range", "parse_version"]

_NUMBER = r"0|[1-9]\d*"
_IDENT = r"[0-9A-Za-z-]+"
_VERSION_RE = re.compile(
    rf"^[vV]?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    rf"(?:[+_](?P<build>{_IDENT}(?:\.{_IDENT})*))?\Z"
)
_PARTIAL_RE = re.compile(
    rf"^[vV]?(?P<major>{_NUMBER})(?:\.(?P<minor>{_NUMBER}))?(?:\.(?P<patch>{_NUMBER}))?\Z"
)
_COMPARATOR_RE = re.compile(r"^(?P<op>>=|<=|!=|>|<|=)?\s*(?P<version>\S+)\Z")
_MAX_RANGE_LENGTH = 1000


def _pre_key(pre: tuple[str, ...]) -> tuple[tuple[int, int | str], ...]:
    """semver.org §11: numeric identifiers numerically, lower than alphanumeric ones."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in pre)


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed version; comparison follows semver precedence (build metadata ignored).

    Attributes:
        major / minor / patch: the three numbers.
        pre: the pre-release identifiers (empty for a release).
        build: the build metadata identifiers (never compared).
    """

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @property
    def core(self) -> tuple[int, int, int]:
        """`(major, minor, patch)`."""
        return (self.major, self.minor, self.patch)

    def _key(self) -> tuple[object, ...]:
        # A release sorts after each of its pre-releases.
        return (self.core, not self.pre, _pre_key(self.pre))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __str__(self) -> str:
        text = ".".join(str(n) for n in self.core)
        if self.pre:
            text += "-" + ".".join(self.pre)
        return text + ("+" + ".".join(self.build) if self.build else "")


def _numeric_pre(pre: str | None) -> tuple[str, ...]:
    parts = tuple(pre.split(".")) if pre else ()
    for part in parts:
        if part.isdigit() and part != "0" and part.startswith("0"):
            raise ValueError(f"pre-release identifier {part!r} has a leading zero")
    return parts


def parse_version(text: str) -> Version | None:
    """Parse a tag as a version; None when it is not one (such tags are dropped by filters)."""
    match = _VERSION_RE.match(text)
    if match is None:
        return None
    try:
        pre = _numeric_pre(match["pre"])
    except ValueError:
        return None
    build = tuple(match["build"].split(".")) if match["build"] else ()
    return Version(int(match["major"]), int(match["minor"]), int(match["patch"]), pre, build)


@dataclass(frozen=True)
class Comparator:
    """One comparator of a range: `op` and the version, with how many numbers were written."""

    op: str
    version: Version
    written: int = 3  # numbers written: `3.4` → 2

    def holds(self, version: Version) -> bool:
        """Whether `version` satisfies this comparator (pre-release rule aside)."""
        if self.op in ("=", "!="):
            same = (
                version == self.version
                if self.written == 3
                else version.core[: self.written] == self.version.core[: self.written]
            )
            return same if self.op == "=" else not same
        if self.op == ">=":
            return version >= self.version
        if self.op == ">":
            return version > self.version
        if self.op == "<=":
            return version <= self.version
        return version < self.version


@dataclass(frozen=True)
class SemverRange:
    """Comparators that must all hold; `text` is the range as written."""

    text: str
    comparators: tuple[Comparator, ...]

    def matches(self, version: Version) -> bool:
        """All comparators hold, and a pre-release needs a comparator asking for it (npm)."""
        if not all(c.holds(version) for c in self.comparators):
            return False
        if not version.pre:
            return True
        return any(c.version.pre and c.version.core == version.core for c in self.comparators)

    def matches_tag(self, tag: str) -> bool:
        """Whether a tag parses as a version inside the range."""
        version = parse_version(tag)
        return version is not None and self.matches(version)


def _comparator(text: str) -> Comparator:
    match = _COMPARATOR_RE.match(text)
    if match is None:
        raise ValueError(f"comparator {text!r} is not '<op> <version>'")
    op = match["op"] or "="
    written = match["version"]
    full = parse_version(written)
    if full is not None:
        return Comparator(op, full)
    partial = _PARTIAL_RE.match(written)
    if partial is None:
        raise ValueError(
            f"{written!r} is not a version (want MAJOR[.MINOR[.PATCH]][-pre], e.g. 1.2.3)"
        )
    numbers = [partial[name] for name in ("major", "minor", "patch")]
    count = sum(1 for n in numbers if n is not None)
    major, minor, patch = (int(n) if n is not None else 0 for n in numbers)
    return Comparator(op, Version(major, minor, patch), written=count)


def parse_range(text: str) -> SemverRange:
    """Parse a `semver:` range (see the module docstring).

    Raises:
        ValueError: the range is empty or a comparator does not parse.
    """
    if len(text) > _MAX_RANGE_LENGTH:
        raise ValueError(f"range longer than {_MAX_RANGE_LENGTH} characters")
    parts = [part.strip() for part in text.split(",")]
    if not text.strip():
        raise ValueError("range is empty")
    for position, part in enumerate(parts, start=1):
        if not part:
            raise ValueError(f"comparator {position} is empty (stray comma?)")
    return SemverRange(text=text.strip(), comparators=tuple(_comparator(p) for p in parts))
