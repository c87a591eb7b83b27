"""The images file (`--images`): source key → destination(s), parsed into `SyncRule`s.

Source keys (behaviour spec §3.2):

| key                 | selects                                                   |
| ------------------- | --------------------------------------------------------- |
| `repo`              | every tag (listed at planning time)                       |
| `repo:tag`          | that tag                                                  |
| `repo:t1, t2, sha…` | those tags/digests, in order (items trimmed)              |
| `repo@sha256:…`     | that manifest (`repo:tag@digest` keeps only the digest)   |
| `repo:/regex/`      | listed tags where `re.search(regex, tag)` matches         |

Destinations: `repo` keeps the source tags/digests, `repo:t` renames the one
source item, `repo:a,b` pairs left to right, `repo@sha256:…` pins; a list
gives one rule per (de-duplicated) element; `""`/null means
`<default registry>/<source repository>`. `${VAR}`/`$VAR` are expanded in
destinations only. Every check that needs no tag listing happens here, so
bad files fail before any network traffic.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from syncer_core.config.files import expand_env, load_document, type_name, unset_env_vars
from syncer_core.config.filters import FilterProblem, TagFilters, parse_rule_mapping
from syncer_core.config.prunecheck import check_prune_targets
from syncer_core.digest import is_digest
from syncer_core.errors import InvalidReferenceError, RuleError
from syncer_core.reference import Reference, is_valid_tag

__all__ = [
    "RuleSet",
    "SourceSpec",
    "SyncRule",
    "TargetSpec",
    "build_rules",
    "check_rule_options",
    "load_images_file",
    "parse_destination",
    "parse_source",
    "resolve_default_registry",
]

_MAX_REGEX_LENGTH = 1000


class _Problem(Exception):
    """An internal rule problem; public functions wrap it in `RuleError`."""


def _reference_for(repository: Reference, item: str) -> Reference:
    return repository.with_digest(item) if is_digest(item) else repository.with_tag(item)


class SourceSpec(BaseModel):
    """The source side of a rule.

    Attributes:
        text: the key as written.
        repository: the repository, without tag or digest.
        mode: `all` tags, explicit `items`, or `regex`-filtered tags.
        items: the tags/digests for mode `items`, in written order.
        pattern: the compiled regex for mode `regex`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    repository: Reference
    mode: Literal["all", "items", "regex"]
    items: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None

    @property
    def needs_listing(self) -> bool:
        """Whether the source's tags must be listed before planning."""
        return self.mode != "items"

    def reference(self, item: str) -> Reference:
        """Return the source image for one tag or digest."""
        return _reference_for(self.repository, item)


class TargetSpec(BaseModel):
    """The destination side of a rule.

    Attributes:
        text: the destination after env expansion / default-registry filling.
        repository: the repository, without tag or digest.
        items: tags/digests paired with the source items; empty = keep them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    repository: Reference
    items: tuple[str, ...] = ()

    def reference(self, item: str) -> Reference:
        """Return the target image for one tag or digest."""
        return _reference_for(self.repository, item)


class SyncRule(BaseModel):
    """One (source key, destination) pair of the images file.

    Attributes:
        key: the source key as written in the file.
        source: the parsed source.
        target: the parsed destination.
        filters: exclude / semver / latest, applied after the key's selection.
        referrers: also copy signatures, attestations and SBOMs of each image.
        prune: delete destination tags that left the selection.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    source: SourceSpec
    target: TargetSpec
    filters: TagFilters = TagFilters()
    referrers: bool = False
    prune: bool = False

    @property
    def name(self) -> str:
        """`<source key> -> <destination>`, the rule's name in jobs and logs."""
        return f"{self.key} -> {self.target.text}"


class RuleSet(BaseModel):
    """All rules of one images file, in file order.

    Attributes:
        file: the file they came from, if any.
        rules: the rules.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None
    rules: tuple[SyncRule, ...] = ()


def _parse_reference(text: str, what: str) -> Reference:
    try:
        return Reference.parse(text)
    except InvalidReferenceError as exc:
        raise _Problem(f"invalid {what} {text!r}: {exc.reason}") from None


def _check_item(item: str, position: int) -> str:
    if not item:
        raise _Problem(f"item {position} of the tag list is empty (stray comma?)")
    if not (is_digest(item) or is_valid_tag(item)):
        raise _Problem(f"item {position} {item!r} is neither a valid tag nor a digest")
    return item


def _parse_items(text: str, what: str) -> tuple[Reference, tuple[str, ...]]:
    """Parse `repo[:t1[,t2...]]` / `repo@digest[,...]` into (repository, items)."""
    first, *rest = (part.strip() for part in text.split(","))
    ref = _parse_reference(first, what)
    if ref.tag is not None and ref.digest is not None and what == "destination":
        raise _Problem(f"destination {text!r} must not have both a tag and a digest")
    head = ref.digest or ref.tag  # `repo:tag@digest` as a source: the digest wins
    if rest and head is None:
        raise _Problem(f"a tag list needs a tag on the repository ('repo:t1,t2'), not {text!r}")
    items = tuple(_check_item(item, n) for n, item in enumerate(rest, start=2))
    return ref.with_tag(None), ((head,) if head else ()) + items


def _compile(pattern: str) -> re.Pattern[str]:
    if len(pattern) > _MAX_REGEX_LENGTH:
        raise _Problem(f"tag regex longer than {_MAX_REGEX_LENGTH} characters")
    try:
        return re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise _Problem(f"invalid tag regex /{pattern}/: {exc}") from None


def _source(text: str) -> SourceSpec:
    if not isinstance(text, str):
        raise _Problem(f"source must be a string, got {type_name(text)}")
    text = text.strip()
    if not text:
        raise _Problem("source is empty")
    if ":/" in text:
        repo_text, _, rest = text.partition(":/")
        if not rest.endswith("/"):
            raise _Problem("a tag regex must be written 'repo:/regex/' (closing '/' missing)")
        repo = _parse_reference(repo_text, "source repository")
        if repo.tag is not None or repo.digest is not None:
            raise _Problem("a tag regex source must not also name a tag or digest")
        return SourceSpec(text=text, repository=repo, mode="regex", pattern=_compile(rest[:-1]))
    repo, items = _parse_items(text, "source")
    mode: Literal["all", "items"] = "items" if items else "all"
    return SourceSpec(text=text, repository=repo, mode=mode, items=items)


def _target(text: str) -> TargetSpec:
    if ":/" in text:
        raise _Problem(f"destination {text!r}: a tag regex is only allowed in a source")
    repo, items = _parse_items(text, "destination")
    return TargetSpec(text=text, repository=repo, items=items)


def parse_source(text: str, *, file: str | None = None, key: str | None = None) -> SourceSpec:
    """Parse a source key (see the module docstring for the forms).

    Args:
        text: the key.
        file: the images file, for the error message.
        key: the key to name in the error (defaults to `text`).

    Returns:
        The parsed source; a regex is already compiled.

    Raises:
        RuleError: the key is not a valid source.
    """
    try:
        return _source(text)
    except _Problem as exc:
        raise RuleError(str(exc), file=file, key=key if key is not None else str(text)) from None


def parse_destination(text: str, *, file: str | None = None, key: str | None = None) -> TargetSpec:
    """Parse one destination string (already env-expanded).

    Args:
        text: the destination.
        file: the images file, for the error message.
        key: the source key to name in the error (defaults to `text`).

    Returns:
        The parsed destination.

    Raises:
        RuleError: the destination is not valid.
    """
    try:
        if not isinstance(text, str):
            raise _Problem(f"destination must be a string, got {type_name(text)}")
        return _target(text.strip())
    except _Problem as exc:
        raise RuleError(str(exc), file=file, key=key if key is not None else str(text)) from None


def resolve_default_registry(flag: str | None, env: Mapping[str, str]) -> str | None:
    """Return the default registry: `--registry` if set, else `$DEFAULT_REGISTRY`."""
    for value in (flag, env.get("DEFAULT_REGISTRY")):
        if value and value.strip().strip("/"):
            return value.strip().strip("/")
    return None


def _destination_texts(value: Any) -> list[str | None]:
    if value is None or isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _Problem(f"destination must be a string or a list of strings, got {type_name(value)}")
    if not value:
        raise _Problem("destination list is empty")
    for index, element in enumerate(value):
        if element is not None and not isinstance(element, str):
            raise _Problem(f"destination[{index}] must be a string, got {type_name(element)}")
    return list(value)


def _resolve_text(
    raw: str | None, source: SourceSpec, default: str | None, env: Mapping[str, str]
) -> str:
    if raw is None or not raw.strip():
        if default is None:
            raise _Problem(
                "empty destination needs a default registry: pass --registry "
                "or set DEFAULT_REGISTRY"
            )
        return f"{default}/{source.repository.repository}"
    text = expand_env(raw.strip(), env).strip()
    if not text:
        unset = ", ".join(unset_env_vars(raw, env)) or "none"
        raise _Problem(f"destination {raw!r} expands to an empty string (unset variables: {unset})")
    return text


def _check_pairing(source: SourceSpec, target: TargetSpec, filtered: bool = False) -> None:
    """The checks that need no tag listing (behaviour spec §3.4).

    With tag filters the count is only known after filtering, at plan time.
    """
    if source.mode == "items" and target.items and not filtered:
        if len(source.items) != len(target.items):
            raise _Problem(
                f"destination {target.text!r} names {len(target.items)} tag(s)/digest(s) "
                f"but the source names {len(source.items)}"
            )
        for src, dst in zip(source.items, target.items, strict=True):
            if is_digest(dst) and is_digest(src) and src != dst:
                raise _Problem(f"destination digest {dst} differs from source digest {src}")
    if source.repository.same_repository(target.repository):
        if not target.items:
            raise _Problem(f"destination {target.text!r} is the source repository itself")
        if source.mode == "items" and source.items == target.items:
            raise _Problem(f"destination {target.text!r} is the source image itself")


def _check_options(rule: SyncRule) -> None:
    """Refuse mapping-form options that cannot apply to this source or destination."""
    source, target = rule.source, rule.target
    digests = [item for item in source.items if is_digest(item)]
    if rule.filters.active and digests:
        raise _Problem(
            f"exclude/semver/latest filter tags, but the source names the digest {digests[0]}"
        )
    if rule.prune and target.items:
        raise _Problem(
            f"prune: refused, destination {target.text!r} renames tags or pins a digest "
            "(prune compares destination tags with the source selection)"
        )
    if rule.prune and digests:
        raise _Problem(f"prune: refused, the source names the digest {digests[0]}, not tags")


def _rules_for(key: str, value: Any, default: str | None, env: Mapping[str, str]) -> list[SyncRule]:
    source = _source(key)
    options: dict[str, Any] = {}
    if isinstance(value, dict):
        try:
            mapping = parse_rule_mapping(value)
        except FilterProblem as exc:
            raise _Problem(str(exc)) from None
        value = mapping.to
        options = {
            "filters": mapping.filters,
            "referrers": mapping.referrers,
            "prune": mapping.prune,
        }
    rules: dict[tuple[Reference, tuple[str, ...]], SyncRule] = {}
    where_prefix = "to: " if options else ""
    for index, raw in enumerate(_destination_texts(value)):
        try:
            target = _target(_resolve_text(raw, source, default, env))
            rule = SyncRule(key=key, source=source, target=target, **options)
            _check_pairing(source, target, filtered=rule.filters.active)
            _check_options(rule)
        except _Problem as exc:
            where = f"destination[{index}]: " if isinstance(value, list) else ""
            raise _Problem(f"{where_prefix}{where}{exc}") from None
        # Duplicates (also `nginx` vs `docker.io/library/nginx`) collapse; first kept.
        rules.setdefault((target.repository, target.items), rule)
    return list(rules.values())


def check_rule_options(rule: SyncRule, *, file: str | None = None, prefix: str = "") -> None:
    """Check a rule's filters, `referrers` and `prune` against its source and destination.

    Used again when `--prune` / `--referrers` turn an option on for every rule.

    Raises:
        RuleError: naming the file and the rule's key.
    """
    try:
        _check_options(rule)
    except _Problem as exc:
        raise RuleError(f"{prefix}{exc}", file=file, key=rule.key) from None


def build_rules(
    data: Mapping[str, Any],
    *,
    file: str | None = None,
    default_registry: str | None = None,
    env: Mapping[str, str] | None = None,
) -> RuleSet:
    """Turn a decoded images mapping into rules (also the legacy `images:` section).

    Args:
        data: source key → destination string, list or null.
        file: the file name for messages.
        default_registry: the `--registry` flag (wins over `$DEFAULT_REGISTRY`).
        env: the environment for expansion; defaults to `os.environ`.

    Returns:
        The rules in file order.

    Raises:
        RuleError: naming the file and source key, for the first bad entry.
    """
    environ = dict(os.environ if env is None else env)
    default = resolve_default_registry(default_registry, environ)
    rules: list[SyncRule] = []
    for key, value in data.items():
        try:
            rules.extend(_rules_for(key, value, default, environ))
        except _Problem as exc:
            raise RuleError(str(exc), file=file, key=str(key)) from None
    result = RuleSet(file=file, rules=tuple(rules))
    check_prune_targets(result)
    return result


def load_images_file(
    path: str | os.PathLike[str],
    *,
    default_registry: str | None = None,
    env: Mapping[str, str] | None = None,
) -> RuleSet:
    """Load an `--images` file (YAML or JSON by suffix).

    Args:
        path: the images file.
        default_registry: the `--registry` flag value, if given.
        env: the environment for `${VAR}` and `DEFAULT_REGISTRY`; defaults
            to `os.environ`.

    Returns:
        The rules in file order.

    Raises:
        ConfigError: the file is unreadable or malformed.
        RuleError: an entry is invalid (file and key named).
    """
    data = load_document(path)
    return build_rules(data, file=str(path), default_registry=default_registry, env=env)
