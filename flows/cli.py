"""The command line: image-syncer's flags, run as a Prefect flow.

Exit codes: 0 every image succeeded; 1 some image or rule failed (each is
named with its reason); 2 a configuration or usage error, detected before
any network traffic.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows import environment

environment.apply_defaults()

from syncer_core.errors import ConfigError  # noqa: E402
from syncer_core.platform import PlatformFilter  # noqa: E402
from syncer_core.runconfig import load_run_config  # noqa: E402
from syncer_core.sync.results import ImageStatus, SyncReport, write_private_file  # noqa: E402

__all__ = ["build_parser", "main"]

log = logging.getLogger("image_syncer")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows a flag's default once, and only when it has one worth showing.

    argparse's `ArgumentDefaultsHelpFormatter` printed "(default: None)" for
    required and optional-file flags alike, and a second default after help
    texts that already said theirs.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; `-h` marks the required flag and shows each default once."""
    p = argparse.ArgumentParser(
        prog="image-syncer",
        description="Mirror container images between registries (a Prefect flow).",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--auth",
        help="auth file (YAML/JSON): registry[/namespace] -> credentials "
        "(default: only ~/.docker/config.json)",
    )
    p.add_argument(
        "--images",
        help="images file (YAML/JSON): source -> destination(s); required unless --config",
    )
    p.add_argument(
        "--config",
        help="legacy file with auth: and images: sections (--auth/--images are then ignored)",
    )
    p.add_argument(
        "--registry",
        help="default destination registry for empty destinations (else $DEFAULT_REGISTRY)",
    )
    p.add_argument("-p", "--proc", type=int, default=5, help="blob transfers in flight")
    p.add_argument(
        "-r",
        "--retries",
        type=int,
        default=2,
        help="retries of a failed transfer (transient errors only)",
    )
    p.add_argument(
        "--os",
        action="append",
        default=[],
        metavar="OS[:VERSION]",
        help="only these OSes; repeatable and comma-separated",
    )
    p.add_argument(
        "--arch",
        action="append",
        default=[],
        metavar="ARCH[:VARIANT]",
        help="only these architectures; repeatable and comma-separated",
    )
    p.add_argument("--force", action="store_true", help="push manifests even if unchanged")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check and plan only: print per image what would be copied, mounted and "
        "pushed; push nothing",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="every rule deletes destination tags that left its selection (see prune: in README)",
    )
    p.add_argument(
        "--referrers",
        action="store_true",
        help="every rule also copies the signatures, attestations and SBOMs of its images",
    )
    p.add_argument("--log", metavar="FILE", help="also write logs to FILE")
    p.add_argument(
        "--output-success-images",
        metavar="FILE",
        help="write synced and unchanged images as an images file",
    )
    p.add_argument(
        "--output-failed-images",
        metavar="FILE",
        help="write failed images, and rules that failed whole, as an images file to retry",
    )
    p.add_argument(
        "--output-images-format",
        choices=("yaml", "json"),
        default="yaml",
        help="format of the --output-*-images files",
    )
    p.add_argument("--report", metavar="FILE", help="write a JSON report of every image")
    p.add_argument(
        "--rule-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="rule subflows in progress at once (default: 1 on the temporary API; else 1 "
        "widening to 4, and back to 1 once the API answers 503 or 429)",
    )
    p.add_argument(
        "--registry-limit",
        type=int,
        default=0,
        metavar="N",
        help="cap blob transfers into each destination registry across all workers "
        "with the Prefect global concurrency limit registry:<host> (0: off)",
    )
    p.add_argument(
        "--dispatch-to",
        metavar="FLOW/DEPLOYMENT",
        help="run the rules as shard flow runs of this deployment, on its workers",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=0,
        help="shards for --dispatch-to (0: one per source repository)",
    )
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Reject flag values that make no sense, naming the flag."""
    if args.proc < 1:
        raise ConfigError(f"must be at least 1, got {args.proc}", file="--proc")
    if args.retries < 0:
        raise ConfigError(f"must be 0 or more, got {args.retries}", file="--retries")
    if args.registry_limit < 0:
        raise ConfigError(f"must be 0 or more, got {args.registry_limit}", file="--registry-limit")
    if args.shards < 0:
        raise ConfigError(f"must be 0 or more, got {args.shards}", file="--shards")
    if args.shards and not args.dispatch_to:
        raise ConfigError("only makes sense with --dispatch-to", file="--shards")
    if args.rule_concurrency is not None and args.rule_concurrency < 1:
        raise ConfigError(
            f"must be at least 1, got {args.rule_concurrency}", file="--rule-concurrency"
        )
    inputs = {Path(v).resolve() for v in (args.images, args.auth, args.config) if v}
    for flag in ("log", "output_success_images", "output_failed_images", "report"):
        value = getattr(args, flag)
        if value is None:
            continue
        name = "--" + flag.replace("_", "-")
        if not Path(value).resolve().parent.is_dir():
            raise ConfigError(f"directory of {value!r} does not exist", file=name)
        if Path(value).resolve() in inputs:
            raise ConfigError(f"{value!r} is an input file; refusing to overwrite it", file=name)
    PlatformFilter.from_flags(args.os, args.arch)


def _setup_logging(log_file: str | None) -> None:
    log.setLevel(logging.INFO)
    log.propagate = False  # Prefect's root console handler would print every line twice
    if not log.handlers:
        log.addHandler(logging.StreamHandler(sys.stderr))
    if log_file:
        write_private_file(Path(log_file), "")
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
        file_handler.setFormatter(logging.Formatter(fmt))
        for name in ("image_syncer", "prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addHandler(file_handler)


def _write_outputs(args: argparse.Namespace, report: SyncReport) -> None:
    fmt = args.output_images_format
    if args.output_success_images:
        report.write_images_file(
            Path(args.output_success_images), (ImageStatus.SYNCED, ImageStatus.SKIPPED), fmt
        )
    if args.output_failed_images:
        report.write_images_file(Path(args.output_failed_images), (ImageStatus.FAILED,), fmt)
    if args.report:
        report.write_json(Path(args.report))


def _run(args: argparse.Namespace, ignored_flags: Sequence[str] = ()) -> SyncReport:
    from flows import embedded

    api = embedded.start_if_needed()  # it starts while Prefect and the flows are imported
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    from flows.sync import sync_images  # imported late: Prefect is slow to import

    # After Prefect's import: its logging set-up (dictConfig) replaces the
    # handlers of the loggers it configures, the --log file's among them.
    _setup_logging(args.log)
    for flag in ignored_flags:
        log.warning("%s is ignored because --config is given", flag)
    if api is not None:
        log.info("Started a temporary Prefect API server on %s", api.url.removesuffix("/api"))

    # No flow-run heartbeat for a CLI run: the heartbeat thread sleeps in 1 s
    # steps and the flow joins it on exit (0-1 s added to every run, measured
    # 1.30 -> 0.26 s per trivial flow); the caller's shell watches a CLI run.
    # Deployment runs, started by workers, keep Prefect's heartbeat.
    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if api is not None:
        updates[PREFECT_API_URL] = api.url
    try:
        with temporary_settings(updates=updates):
            if api is not None:
                api.wait_healthy()
            state = _call_flow(sync_images, args)
            _drain(state, temporary=api is not None)
    finally:
        if api is not None:
            api.stop()
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    assert isinstance(result, SyncReport)
    return result


def _drain(state: Any, *, temporary: bool) -> None:
    """Send the last events and, on a temporary API, wait until the run is fully recorded."""
    from prefect.settings import get_current_settings

    from flows.events import drain_image_events

    if drain_image_events():
        log.warning("some image events could not be sent to the Prefect API in time")
    if temporary or not get_current_settings().api.url:
        from flows.records import wait_until_recorded

        flow_run_id = state.state_details.flow_run_id
        if flow_run_id is not None:
            status = wait_until_recorded(flow_run_id)
            if status.pending:
                log.warning("Prefect still has %d unfinished run records", status.pending)


def _call_flow(sync_images: Any, args: argparse.Namespace) -> Any:
    """Call the flow with the CLI's options; returns its final state."""
    return sync_images(
        images=args.images,
        auth=args.auth,
        config=args.config,
        registry=args.registry,
        proc=args.proc,
        retries=args.retries,
        os_filter=args.os,
        arch_filter=args.arch,
        force=args.force,
        dry_run=args.dry_run,
        rule_concurrency=args.rule_concurrency,
        registry_limit=args.registry_limit,
        dispatch_to=args.dispatch_to,
        shards=args.shards,
        prune=args.prune,
        referrers=args.referrers,
        return_state=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run image-syncer; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        _check_args(args)
        run_config = load_run_config(
            images=args.images,
            auth=args.auth,
            config=args.config,
            registry=args.registry,
            prune=args.prune,
            referrers=args.referrers,
        )
    except ConfigError as error:
        print(f"image-syncer: error: {error}", file=sys.stderr)
        return 2
    try:
        report = _run(args, run_config.ignored_flags)
    except ConfigError as error:
        print(f"image-syncer: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the run crashed: say why, exit 1
        log.error("image-syncer: run failed: %s: %s", type(error).__name__, error)
        return 1
    _write_outputs(args, report)
    for image in report.images:
        if image.status == ImageStatus.PLANNED:
            print(f"PLAN {image.source} -> {image.target}: {image.reason}")
    for line in report.failure_lines():
        print(f"FAILED {line}")
    print(f"Synchronization finished: {report.summary()}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
