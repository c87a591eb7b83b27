"""Planning: rules + tag listings → concrete `SyncJob`s, one result per rule.

Pure: no I/O of its own. Tag listings are fetched by the caller (the
engine's `sync.check.check_rule` lists one rule's source at a time;
`repositories_to_list` + `plan_jobs` serve a caller planning a batch), and
credentials are resolved through the injected `lookup`, so a failing
credential helper, a missing listing or a count mismatch fails that rule
alone while the other rules go on (the original instead aborted or silently
dropped rules, behaviour spec §3.4, §7.1).

Order: explicit items keep their written order (they pair with destination
items); listed and regex-matched tags are sorted. Jobs are de-duplicated per
rule, not across rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from syncer_core.config.rules import SyncRule
from syncer_core.errors import ConfigError
from syncer_core.reference import Reference, is_valid_tag
from syncer_core.referrertags import is_referrer_tag
from syncer_core.registry.access import RegistryAccess

__all__ = [
    "CredentialLookup",
    "RulePlan",
    "SyncJob",
    "plan_jobs",
    "plan_rule",
    "repositories_to_list",
]

#: Resolves the credentials for an image; raises `ConfigError` on failure.
CredentialLookup = Callable[[Reference], RegistryAccess]

_PREVIEW = 5


class SyncJob(BaseModel):
    """Copy one image: `source` and `target` each carry a tag or a digest.

    Attributes:
        source: the image to read.
        target: where to write it (by tag, or by digest when pinned).
        rule: the name of the rule that produced the job.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Reference
    target: Reference
    rule: str

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}"


class RulePlan(BaseModel):
    """What one rule expands to: jobs, or the error that failed it.

    Attributes:
        rule: the rule's name (`<source key> -> <destination>`).
        jobs: the jobs, empty if the rule failed or matched nothing.
        error: why the rule failed, or None.
        warnings: non-fatal notes (e.g. listed tags that are not valid tags).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    jobs: tuple[SyncJob, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the rule was planned without error."""
        return self.error is None


class _PlanProblem(Exception):
    pass


def repositories_to_list(rules: Iterable[SyncRule]) -> list[Reference]:
    """Return the source repositories whose tags must be listed, sorted and unique.

    Args:
        rules: the rules to plan.

    Returns:
        Untagged references; their `.name` is the key `plan_jobs` expects in
        `tag_listings`.
    """
    repos = {rule.source.repository.name: rule.source.repository for rule in rules}
    needed = {rule.source.repository.name for rule in rules if rule.source.needs_listing}
    return [repos[name] for name in sorted(needed)]


def _preview(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_PREVIEW])
    return f"{shown}, ..." if len(items) > _PREVIEW else shown


def _listed_items(
    rule: SyncRule,
    tag_listings: Mapping[str, Sequence[str]],
    listing_errors: Mapping[str, str],
) -> tuple[list[str], list[str]]:
    """Return (source items, warnings) for a rule; listed tags are sorted.

    The rule's tag filters (exclude, semver, latest) run on what the key
    selected; with `referrers`, cosign and referrer-schema tags are left to
    the referrers step, which copies them after their subjects.
    """
    items, warnings = _selected_items(rule, tag_listings, listing_errors)
    if rule.referrers and rule.source.mode != "items":
        items = [item for item in items if not is_referrer_tag(item)]
    return rule.filters.apply(items) if rule.filters.active else items, warnings


def _selected_items(
    rule: SyncRule,
    tag_listings: Mapping[str, Sequence[str]],
    listing_errors: Mapping[str, str],
) -> tuple[list[str], list[str]]:
    """The key's own selection: its items, or the listed (and regex-matched) tags."""
    source = rule.source
    if source.mode == "items":
        return list(source.items), []
    name = source.repository.name
    if name not in tag_listings:
        reason = listing_errors.get(name, "no tag listing was provided")
        raise _PlanProblem(f"cannot list tags of {name}: {reason}")
    tags = sorted(set(tag_listings[name]))
    invalid = [tag for tag in tags if not is_valid_tag(tag)]
    warnings = [f"ignored invalid tags listed by {name}: {_preview(invalid)}"] if invalid else []
    valid = [tag for tag in tags if is_valid_tag(tag)]
    if source.pattern is not None:
        valid = [tag for tag in valid if source.pattern.search(tag)]
    return valid, warnings


def _pair(rule: SyncRule, items: list[str]) -> list[tuple[str, str]]:
    target = rule.target
    if not target.items:
        return [(item, item) for item in items]
    if len(items) != len(target.items):
        found = f" ({_preview(items)})" if items else ""
        raise _PlanProblem(
            f"the source matched {len(items)} tag(s){found} but the destination "
            f"{target.text!r} names {len(target.items)}"
        )
    # Digest pairs of items-mode rules were checked when the rule was loaded.
    return list(zip(items, target.items, strict=True))


def _check_credentials(rule: SyncRule, lookup: CredentialLookup | None) -> None:
    if lookup is None:
        return
    for reference in (rule.source.repository, rule.target.repository):
        try:
            lookup(reference)
        except ConfigError as exc:
            raise _PlanProblem(f"credentials for {reference.name}: {exc}") from None


def plan_rule(
    rule: SyncRule,
    tag_listings: Mapping[str, Sequence[str]],
    *,
    lookup: CredentialLookup | None = None,
    listing_errors: Mapping[str, str] | None = None,
) -> RulePlan:
    """Expand one rule into jobs (see `plan_jobs`)."""
    try:
        _check_credentials(rule, lookup)
        items, warnings = _listed_items(rule, tag_listings, listing_errors or {})
        pairs = _pair(rule, items)
    except _PlanProblem as exc:
        return RulePlan(rule=rule.name, error=str(exc))
    jobs: dict[tuple[Reference, Reference], SyncJob] = {}
    for src, dst in pairs:
        job = SyncJob(
            source=rule.source.reference(src), target=rule.target.reference(dst), rule=rule.name
        )
        jobs.setdefault((job.source, job.target), job)
    return RulePlan(rule=rule.name, jobs=tuple(jobs.values()), warnings=tuple(warnings))


def plan_jobs(
    rules: Iterable[SyncRule],
    tag_listings: Mapping[str, Sequence[str]],
    *,
    lookup: CredentialLookup | None = None,
    listing_errors: Mapping[str, str] | None = None,
) -> list[RulePlan]:
    """Expand rules into concrete jobs, one `RulePlan` per rule, in rule order.

    Args:
        rules: the loaded rules (`RuleSet.rules`).
        tag_listings: source repository name (`Reference.name`) → its tags,
            for every repository `repositories_to_list` returned; a missing
            entry fails only the rules that need it.
        lookup: resolves credentials (e.g. `AuthConfig.lookup`); a
            `ConfigError` from it fails only that rule.
        listing_errors: repository name → why its listing failed, quoted in
            the failed rules' errors.

    Returns:
        One plan per rule: its de-duplicated jobs, or its error.
    """
    return [
        plan_rule(rule, tag_listings, lookup=lookup, listing_errors=listing_errors)
        for rule in rules
    ]
