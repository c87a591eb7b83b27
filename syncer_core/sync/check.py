"""Check one rule: list its source tags, expand it into jobs, HEAD-compare every job.

This is the cheap half of a rule, and usually all of it: on a nightly re-run
almost every image is unchanged, and deciding that costs two HEADs per image
plus one tag listing per repository. Doing the whole check as one unit (one
orchestrator task per rule) keeps the orchestrator's bookkeeping off the
no-op path; the images run concurrently on the session's bounded check pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncer_core.errors import NotFoundError, TransientRegistryError
from syncer_core.plan import SyncJob, plan_rule
from syncer_core.reference import Reference
from syncer_core.sync.engine import describe_error, failed_result
from syncer_core.sync.inspect import ImagePlan, Unchanged, inspect_job
from syncer_core.sync.results import ImageResult
from syncer_core.sync.session import SyncSession

__all__ = ["Inspection", "RuleCheck", "check_rule"]

#: What checking one job gives: nothing to do, a plan, or a failure with its reason.
Inspection = Unchanged | ImagePlan | ImageResult


@dataclass(repr=False)
class RuleCheck:
    """The checked rule: every job's inspection, or why the whole rule failed."""

    rule: str
    found: list[Inspection] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        # Orchestrators log a failed check with its repr: one short line, not every plan.
        return f"RuleCheck({self.rule!r}, found={len(self.found)}, error={self.error!r})"


def _listing(session: SyncSession, repository: str) -> list[str]:
    """Tags of a source repository, listed once per run whatever the rules sharing it."""
    reference = Reference.parse(repository)
    return session.listing(
        repository, lambda: session.client(reference).list_tags(reference.repository)
    )


def _inspect_all(
    session: SyncSession, jobs: tuple[SyncJob, ...]
) -> tuple[list[Inspection], list[TransientRegistryError]]:
    """Inspect every job on the session's check pool; failures become results."""
    transient: list[TransientRegistryError] = []

    def inspect(job: SyncJob) -> Inspection:
        try:
            return inspect_job(session, job)
        except TransientRegistryError as error:
            transient.append(error)
            return failed_result(job, error)
        except Exception as error:  # noqa: BLE001 - reported per image with its cause
            return failed_result(job, error)

    return list(session.checks.map(inspect, jobs)), transient


def check_rule(session: SyncSession, index: int, *, raise_transient: bool = False) -> RuleCheck:
    """List, plan and inspect rule `index` of the session.

    A listing failure fails the rule; an inspection failure fails its image
    only. With `raise_transient`, the first transient error (5xx, timeout,
    429) is raised instead, so an orchestrator's retry checks the rule again;
    the last attempt passes False and reports it.
    """
    spec = session.rules[index]
    listings: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    warnings: list[str] = []
    if spec.source.needs_listing:
        name = spec.source.repository.name
        try:
            listings[name] = _listing(session, name)
        except NotFoundError as error:
            # distribution 2.8 answers a repository whose manifests have no
            # tag (all untagged, or pushed by digest) with 404 NAME_UNKNOWN,
            # as it does an unknown one: nothing matched, not a failure.
            listings[name] = []
            warnings.append(
                f"{name}: no tags to sync: the registry lists none ({describe_error(error)}); "
                "it has no tagged image, or the name is wrong: check the rule's source"
            )
        except TransientRegistryError as error:
            if raise_transient:
                raise
            errors[name] = describe_error(error)
        except Exception as error:  # noqa: BLE001 - fails this rule only
            errors[name] = describe_error(error)
    planned = plan_rule(spec, listings, lookup=session.access_for, listing_errors=errors)
    warnings.extend(planned.warnings)
    check = RuleCheck(rule=spec.name, error=planned.error, warnings=warnings)
    if planned.error is None and planned.jobs:
        check.found, transient = _inspect_all(session, planned.jobs)
        if transient and raise_transient:
            raise transient[0]
    return check
