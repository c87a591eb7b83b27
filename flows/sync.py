"""The main job: `python flows/sync.py --auth auth.yaml --images images.yaml ...`.

`sync_images` is the parent Prefect flow (and the deployment entrypoint,
`flows/sync.py:sync_images`): it loads the configuration from file paths,
runs every rule as its own flow run (`flows.rule.sync_rule`), concurrently,
gathers the results into one report, and publishes it as a Markdown
artifact. Its parameters are paths and options, never credentials.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `flows` and `syncer_core` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from flows import environment

    environment.apply_defaults()
    if __name__ == "__main__":  # the CLI, before Prefect is imported (`flows.embedded`)
        from flows.cli import main

        sys.exit(main())

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run as runtime_flow_run
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)
from prefect.task_runners import ThreadPoolTaskRunner

from flows import embedded
from flows.events import open_image_events
from flows.fanout import dispatch_shards, publish_results, shard_rules
from flows.limits import ensure_registry_limits, install_secret_resolver
from flows.progress import report_progress
from flows.pushback import RuleGate, listen_for_pushback
from flows.rule import RuleOutcome, sync_rule
from flows.states import run_state, state_data
from syncer_core.platform import PlatformFilter
from syncer_core.runconfig import RunConfig, load_run_config
from syncer_core.sync.engine import describe_error
from syncer_core.sync.results import RuleEntry, SyncReport, plural
from syncer_core.sync.session import SyncOptions, SyncSession, close_session, register_session

__all__ = ["sync_images"]

ARTIFACT_KEY = "image-sync-report"


def _run_rule(
    rule_flow: Flow[..., State[RuleOutcome]],
    gate: RuleGate,
    session_id: str,
    index: int,
    name: str,
    retries: int,
    limited: bool,
) -> RuleOutcome:
    try:
        with gate.slot():
            state: State[RuleOutcome] = rule_flow(
                session_id, index, name, retries, limited, return_state=True
            )
        outcome = state_data(state)
    except Exception as error:  # noqa: BLE001 - one rule's crash must not stop the others
        outcome = error
    if isinstance(outcome, RuleOutcome):
        return outcome
    reason = describe_error(outcome) if isinstance(outcome, BaseException) else repr(outcome)
    return RuleOutcome(rule=name, error=reason)


def _run_rules(
    session: SyncSession,
    indices: list[int],
    retries: int,
    concurrency: int,
    limited: bool,
    adaptive: bool = False,
) -> list[RuleOutcome]:
    """Run the given rules as subflows, `concurrency` at a time, in rule order.

    `adaptive` (the default concurrency, never a chosen one): start at one
    rule at a time and widen towards `concurrency`, and stay at one once the
    Prefect API pushes back (`flows.pushback`).
    """
    gate = RuleGate(concurrency, adaptive=adaptive)
    # One copy of the rule flow for the run: Prefect gives each flow run its
    # own duplicate of this task runner.
    runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(
        max_workers=max(2, session.options.proc + 2)
    )
    rule_flow = sync_rule.with_options(task_runner=runner)  # type: ignore[arg-type]  # Prefect's generic
    with (
        _narrow_on_pushback(gate),
        ThreadPoolExecutor(max(1, min(concurrency, len(indices) or 1))) as pool,
        # No heartbeat thread for rule subflows: each sync flow joins it on exit,
        # and it sleeps in 1 s steps (measured 1.30 s -> 0.26 s per subflow).
        # A deployment's parent run keeps its heartbeat, so a crashed process is
        # detected (CLI runs turn it off for the parent too, flows/cli.py).
        # Built once: entering it per rule re-read Prefect's profile, TOML and
        # .env files every time (16% of the rule threads' time in a no-op run).
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        futures = []
        for i in indices:
            # Each thread gets a copy of this flow's context (the settings
            # above included), so the rule flow runs are recorded as subflows.
            context = contextvars.copy_context()
            args = (rule_flow, gate, session.id, i, session.rules[i].name, retries, limited)
            futures.append(pool.submit(context.run, functools.partial(_run_rule, *args)))
        return [future.result() for future in futures]


@contextlib.contextmanager
def _narrow_on_pushback(gate: RuleGate) -> Iterator[None]:
    """While rules run, the first request the Prefect API pushes back narrows an adaptive gate."""
    if not gate.adaptive or gate.ceiling == 1:
        yield
        return
    logger = get_run_logger()

    def narrow(message: str) -> None:
        if gate.narrow():
            logger.info(
                "the Prefect API is pushing back (%s): one rule at a time from here on "
                "(--rule-concurrency sets it)",
                message.split(". Another attempt")[0],
            )

    with listen_for_pushback(narrow):
        yield


def default_rule_concurrency() -> int:
    """Rule subflows at once when the caller did not say: 1 on the temporary API, else 4.

    Starting and ending a subflow are blocking writes to the API's database.
    The temporary API server a plain CLI run starts is SQLite, which
    serialises writers; concurrent subflows there queue behind each other's
    locks. Measured on 2 cores, 20 rules: S cold 8.8 s in-flow with 1 rule
    at a time vs 14.1 s with 4, while against a PostgreSQL-backed server 4
    at a time is the faster (8.0 s vs 9.4 s). Against an API URL, 4 is a
    ceiling the gate widens to (`flows.pushback`): a SQLite `prefect server`
    is found out by its 503s.
    """
    return 4 if get_current_settings().api.url and not embedded.active() else 1


def _run_here(
    run_config: RunConfig,
    options: SyncOptions,
    shard: list[int] | None,
    retries: int,
    rule_concurrency: int | None,
    registry_limit: int,
) -> list[RuleOutcome]:
    """Run rules in this process (all of them, or one shard of a dispatched run)."""
    session = SyncSession(run_config.auth.lookup, options)
    session.rules = run_config.rules.rules
    indices = list(range(len(session.rules))) if shard is None else shard
    limited = registry_limit > 0
    if limited:
        registries = {session.rules[i].target.repository.registry for i in indices}
        ensure_registry_limits(registries, registry_limit)
    register_session(session)
    try:
        concurrency = rule_concurrency or default_rule_concurrency()
        adaptive = rule_concurrency is None
        with open_image_events(session.id), report_progress(session.progress, get_run_logger()):
            return _run_rules(session, indices, retries, concurrency, limited, adaptive)
    finally:
        close_session(session.id)


@flow(name="image-syncer", log_prints=False)
def sync_images(
    images: str | None = None,
    auth: str | None = None,
    config: str | None = None,
    registry: str | None = None,
    proc: int = 5,
    retries: int = 2,
    os_filter: list[str] | None = None,
    arch_filter: list[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    rule_concurrency: int | None = None,
    registry_limit: int = 0,
    dispatch_to: str | None = None,
    shards: int = 0,
    shard: list[int] | None = None,
    prune: bool = False,
    referrers: bool = False,
) -> State[SyncReport]:
    """Mirror every image the rules name; the run ends Failed when any image or rule failed.

    Args:
        images: path of the images file (rules).
        auth: path of the auth file.
        config: path of a legacy combined config file (wins over auth/images).
        registry: default destination registry for rules with an empty destination.
        proc: blob transfers in flight across the whole run.
        retries: task retries for transient registry errors (5xx, timeouts, 429).
        os_filter: `--os` patterns (`os` or `os:osversion`), comma-separated or repeated.
        arch_filter: `--arch` patterns (`arch` or `arch:variant`).
        force: push manifests even if the destination already has them.
        dry_run: check and plan only; copy and push nothing.
        rule_concurrency: rules (subflows) in progress at once; None: 1 on the
            temporary API server (SQLite serialises concurrent subflows), else
            from 1 widening to 4, back to 1 once the API pushes back (503/429).
        registry_limit: if > 0, blob transfers into each destination registry
            hold a slot of the global concurrency limit `registry:<host>`
            (created with this size if missing), across every worker.
        dispatch_to: a deployment name (`image-syncer/<deployment>`): run the
            rules as shard flow runs of it, executed by the pool's workers.
        shards: number of shards when dispatching (0: one per source repository).
        shard: rule indices this run handles (set by the dispatcher).
        prune: every rule prunes destination tags that left its selection.
        referrers: every rule copies the referrers (signatures, ...) of its images.

    Returns:
        A Completed or Failed state carrying the report of every image and rule.
    """
    logger = get_run_logger()
    started = time.monotonic()
    install_secret_resolver()
    run_config = load_run_config(
        images=images,
        auth=auth,
        config=config,
        registry=registry,
        prune=prune,
        referrers=referrers,
    )
    platforms = PlatformFilter.from_flags(os_filter or [], arch_filter or [])
    options = SyncOptions(proc=proc, force=force, dry_run=dry_run, platforms=platforms)
    rules = run_config.rules.rules
    logger.info("%s; proc %d; %s", plural(len(rules), "rule"), proc, platforms)
    if dispatch_to:
        # The shards get this run's own parameters (whatever they are), with
        # their rule indices set and dispatching off (`fanout._run_shard`).
        parameters: dict[str, Any] = dict(runtime_flow_run.parameters)
        groups = shard_rules(rules, shards)
        logger.info("dispatching %s to deployment %s", plural(len(groups), "shard"), dispatch_to)
        outcomes = dispatch_shards(dispatch_to, parameters, groups)
    else:
        outcomes = _run_here(run_config, options, shard, retries, rule_concurrency, registry_limit)
        if shard is not None:  # the dispatcher reads a shard's results from this table
            publish_results(outcomes)
    report = _report(outcomes, time.monotonic() - started)
    create_markdown_artifact(report.markdown(), key=ARTIFACT_KEY, description=report.summary())
    for line in report.failure_lines():
        logger.error(line)
    logger.info("Synchronization finished: %s", report.summary())
    return run_state(report)


def _report(outcomes: list[RuleOutcome], seconds: float) -> SyncReport:
    report = SyncReport(seconds=seconds)
    for outcome in outcomes:
        report.images.extend(outcome.images)
        report.referrers.extend(outcome.referrers)
        report.pruned.extend(outcome.pruned)
        if outcome.error is not None:
            report.rule_errors[outcome.rule] = outcome.error
            if outcome.key:
                report.rule_entries[outcome.rule] = RuleEntry(
                    key=outcome.key, target=outcome.target
                )
    return report


if __name__ == "__main__":  # `python -m flows.sync`
    from flows.cli import main

    sys.exit(main())
