"""Benchmark image-syncer against skopeo sync and the original image-syncer.

    python bench/run.py [--quick] [--runs 3] [--proc 5] [--wan 40/1000] [--profile]

Starts two `plain` docker-registry instances on free 127.0.0.1 ports in a
temporary directory, seeds deterministic datasets into the source (see
`bench/datasets.py`), then measures every contender side by side on each
scenario (`bench/scenarios.py`): loopback S cold / no-op / delta, L512, L2G
and the curl pipe, the 5,000-tag and 200-rule no-ops, the Prefect floor,
image-syncer on each Prefect set-up, and the S sequence over a WAN-like
delay line. Prints Markdown tables of medians and ratios plus the issue's
targets, and writes every raw record as JSON to `bench/results/`. The
registries, APIs and delay lines are stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench`, `tests`, `syncer_core` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measure, report, scenarios, tools
from bench.api import KINDS
from bench.harness import Bench

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny datasets, 1 run (smoke test)")
    p.add_argument(
        "--runs",
        type=int,
        default=1,
        help="loopback rounds per tool and case (1; 3 for steadier medians)",
    )
    p.add_argument("--proc", type=int, default=5, help="image-syncer --proc (its default: 5)")
    p.add_argument(
        "--api",
        choices=KINDS,
        default="postgres",
        help="Prefect API for image-syncer: a long-running server on PostgreSQL (default) or "
        "SQLite, or the temporary server each run starts",
    )
    p.add_argument(
        "--setups",
        type=_kinds,
        default=None,
        help="other Prefect set-ups to measure image-syncer on, comma-separated "
        "(default: sqlite,temporary; quick: temporary; 'none' for none)",
    )
    p.add_argument("--setup-runs", type=int, default=1, help="runs per Prefect set-up case (1)")
    p.add_argument(
        "--fixed-concurrency",
        type=lambda text: [int(v) for v in text.split(",") if v],
        default=None,
        help="fixed --rule-concurrency values to compare the default with (1,4; quick: 1)",
    )
    p.add_argument(
        "--wan",
        type=_link,
        default=None,
        help="RTT_MS/RATE_MBIT of the delay line in front of each registry, or 'off' "
        "(default 40/1000; quick: 5/1000)",
    )
    p.add_argument("--wan-runs", type=int, default=1, help="runs per contender over the WAN")
    p.add_argument(
        "--large-runs", type=int, default=1, help="loopback rounds that include L512 and L2G"
    )
    p.add_argument(
        "--scale-runs", type=int, default=1, help="runs of the 5,000-tag and 200-rule no-ops"
    )
    p.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds the Prefect server's CPU must stay quiet before and after each run "
        "(0.5; quick: 0.25)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per measured command")
    p.add_argument("--no-scale-skopeo", action="store_true", help="skip skopeo's scale no-op")
    p.add_argument("--profile", action="store_true", help="also py-spy one S cold + S no-op")
    p.add_argument(
        "--profile-only", action="store_true", help="seed, warm up and profile; measure nothing"
    )
    p.add_argument(
        "--syncer-root",
        type=Path,
        default=tools.PROJECT_ROOT,
        help="image-syncer checkout to run (e.g. a snapshot copy; default: this one)",
    )
    p.add_argument("--workdir", type=Path, help="keep registries and logs here (kept on exit)")
    p.add_argument("--output", type=Path, help="JSON results file (default: bench/results/...)")
    args = p.parse_args(argv)
    quick = args.quick
    if args.settle is None:
        args.settle = 0.25 if quick else 0.5
    if args.setups is None:
        args.setups = ["temporary"] if quick else ["sqlite", "temporary"]
    args.setups = [kind for kind in args.setups if kind != args.api]
    if args.fixed_concurrency is None:
        args.fixed_concurrency = [1] if quick else [1, 4]
    if args.wan is None:
        args.wan = (5.0, 1000.0) if quick else (40.0, 1000.0)
    elif args.wan == ():
        args.wan = None
    return args


def _kinds(text: str) -> list[str]:
    kinds = [] if text == "none" else [k for k in text.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown set-up {unknown[0]!r}: choose from {KINDS}")
    return kinds


def _link(text: str) -> tuple[float, ...]:
    if text == "off":
        return ()
    try:
        rtt, rate = (float(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected RTT_MS/RATE_MBIT, e.g. 40/1000"
        ) from None
    return (rtt, rate)


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS and tool versions, for the results file."""
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo") if "model name" in ln), "?"
    )
    mem = next(
        (ln.split(":", 1)[1].strip() for ln in _read("/proc/meminfo") if "MemTotal" in ln), "?"
    )
    import subprocess

    skopeo = subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "skopeo": skopeo,
    }


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def write_results(bench: Bench, args: argparse.Namespace, started: float) -> Path:
    """Raw records, machine and options as JSON under `bench/results/`."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.output or RESULTS_DIR / f"bench-{'quick' if args.quick else 'full'}-{stamp}.json"
    doc = {
        "command": " ".join(sys.argv),
        "machine": machine_info(),
        "sizes": vars(bench.sizes),
        "runs": args.runs,
        "proc": args.proc,
        "api": args.api,
        "setups": args.setups,
        "wan": args.wan,
        "original": str(bench.original) if bench.original else None,
        "syncer_root": str(args.syncer_root.resolve()),
        "skopeo_private_cache": bench.private_cache,
        "seconds": time.monotonic() - started,
        "records": bench.records,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every measured run succeeded and was verified."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    tools.ensure_system_tools(postgres="postgres" in (args.api, *args.setups))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="image-syncer-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    bench = Bench(args, workdir)
    try:
        bench.start()
        scenarios.run_all(bench)
    except KeyboardInterrupt:
        print("interrupted: stopping the registries", file=sys.stderr)
        return 130
    finally:
        measure.kill_current()
        bench.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    path = write_results(bench, args, started)
    print()
    print(report.render_all(bench.records, args.api))
    print(f"\nraw results: {path}")
    failed = [r for r in bench.records if not r["ok"]]
    for record in failed:
        print(f"FAILED: {record['tool']} {record['case']} run {record['run']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
