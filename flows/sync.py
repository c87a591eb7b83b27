"""The main job: `python flows/sync.py --auth auth.yaml --images images.yaml ...`.

`sync_images` is the parent Prefect flow (and the deployment entrypoint,
`flows/sync.py:sync_images`): it loads the configuration from file paths,
runs every rule as its own flow run (`flows.rule.sync_rule`), concurrently,
gathers the results into one report, and publishes it as a Markdown
artifact. Its parameters are paths and options, never credentials.
"""

from __future__ import annotations

import contextvars
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `flows` and `syncer_core` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from flows import environment

    environment.apply_defaults()

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.rule import RuleOutcome, sync_rule
from syncer_core.platform import PlatformFilter
from syncer_core.runconfig import load_run_config
from syncer_core.sync.engine import describe_error
from syncer_core.sync.results import SyncReport
from syncer_core.sync.session import SyncOptions, SyncSession, close_session, register_session

__all__ = ["sync_images"]

ARTIFACT_KEY = "image-sync-report"


def _run_rule(session_id: str, index: int, name: str, retries: int, workers: int) -> RuleOutcome:
    runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=workers)
    rule_flow = sync_rule.with_options(task_runner=runner)  # type: ignore[arg-type]  # Prefect's generic
    try:
        return rule_flow(session_id, index, name, retries)
    except Exception as error:  # noqa: BLE001 - one rule's crash must not stop the others
        return RuleOutcome(rule=name, error=describe_error(error))


def _run_rules(
    session: SyncSession, session_id: str, retries: int, concurrency: int
) -> list[RuleOutcome]:
    """Run every rule as a subflow, `concurrency` at a time, in rule order."""
    rules = session.rules
    workers = max(2, session.options.proc + 2)
    with ThreadPoolExecutor(max(1, min(concurrency, len(rules) or 1))) as pool:
        futures = [
            # Each thread gets a copy of this flow's context, so the rule
            # flow runs are recorded as subflows of this run.
            pool.submit(
                contextvars.copy_context().run,
                _run_rule,
                session_id,
                i,
                rule.name,
                retries,
                workers,
            )
            for i, rule in enumerate(rules)
        ]
        return [future.result() for future in futures]


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
    rule_concurrency: int = 4,
) -> SyncReport:
    """Mirror every image the rules name.

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
        rule_concurrency: rules (subflows) in progress at once.

    Returns:
        The report of every image and rule.
    """
    logger = get_run_logger()
    started = time.monotonic()
    run_config = load_run_config(images=images, auth=auth, config=config, registry=registry)
    platforms = PlatformFilter.from_flags(os_filter or [], arch_filter or [])
    options = SyncOptions(proc=proc, force=force, dry_run=dry_run, platforms=platforms)
    session = SyncSession(run_config.auth.lookup, options)
    session.rules = run_config.rules.rules
    session_id = register_session(session)
    logger.info("%d rules; proc %d; %s", len(session.rules), proc, platforms)
    try:
        outcomes = _run_rules(session, session_id, retries, rule_concurrency)
    finally:
        close_session(session_id)
    report = SyncReport(seconds=time.monotonic() - started)
    for outcome in outcomes:
        report.images.extend(outcome.images)
        if outcome.error is not None:
            report.rule_errors[outcome.rule] = outcome.error
    create_markdown_artifact(report.markdown(), key=ARTIFACT_KEY, description=report.summary())
    for line in report.failure_lines():
        logger.error(line)
    logger.info("Synchronization finished: %s", report.summary())
    return report


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main())
