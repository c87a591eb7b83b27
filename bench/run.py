"""Benchmark image-syncer against skopeo sync between two local registries.

    python bench/run.py [--quick] [--runs 3] [--proc 5] [--profile]

Starts two `plain` docker-registry instances on free 127.0.0.1 ports in a
temporary directory, seeds deterministic datasets into the source (see
`bench/datasets.py`), then runs skopeo and image-syncer alternately on each
case (S cold, S no-op, delta, L512, L2G), wiping the destination before every
cold run; then a curl GET | PUT pipe of each large blob and a no-op re-sync
of a repository with thousands of tags. Prints Markdown tables of medians
and image-syncer / skopeo ratios and writes every raw record as JSON to
`bench/results/`. The registries are stopped on exit, Ctrl-C included.
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
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench`, `tests`, `syncer_core` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import datasets, measure, phases, report, tools
from bench.api import KINDS, PrefectApi
from bench.datasets import DatasetSizes, LargeImage, SeededImage

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SKOPEO, SYNCER, CURL = report.SKOPEO, report.SYNCER, "curl pipe"
Record = dict[str, Any]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny datasets, 1 run (smoke test)")
    p.add_argument("--runs", type=int, default=None, help="runs per tool and case (3; quick: 1)")
    p.add_argument("--proc", type=int, default=5, help="image-syncer --proc (its default: 5)")
    p.add_argument(
        "--api",
        choices=KINDS,
        default="postgres",
        help="Prefect API for image-syncer: a long-running server on PostgreSQL (default) or "
        "SQLite, or the temporary server each run starts",
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
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    return args


class Bench:
    """Two registries, the seeded datasets, and every measured run."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        from tests.support.registry_server import RegistryServer

        self.args = args
        self.sizes = DatasetSizes.quick() if args.quick else DatasetSizes.full()
        self.workdir = workdir
        self.src = RegistryServer("plain", workdir / "src")
        self.dst = RegistryServer("plain", workdir / "dst")
        self.api = PrefectApi(args.api, workdir)
        self.records: list[Record] = []
        self.private_cache = False
        self._cache_generation = 0
        self.large: dict[str, LargeImage] = {}
        self.small: list[SeededImage] = []
        self.scale_digest = ""

    # -- set-up -------------------------------------------------------------------

    def start(self) -> None:
        """Start both registries, write the tool configurations, seed the source."""
        self.src.start()
        self.dst.start()
        self.private_cache = tools.unshare_works()
        self.auth = tools.write_auth(self.workdir / "auth.yaml", [self.src.host, self.dst.host])
        self.prefect_home = self.workdir / "prefect-home"
        self.prefect_home.mkdir(exist_ok=True)
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.api.start()
        self.seed()

    def seed(self) -> None:
        """Push S, L512, L2G and the scale repository into the source."""
        started = time.monotonic()
        client = datasets.registry_client(self.src.host)
        with client:
            self.small = datasets.seed_small_set(client, self.sizes)
            for case, size, seed in (("L512", self.sizes.l512, 512), ("L2G", self.sizes.l2g, 2048)):
                repo = "bench-l512" if case == "L512" else "bench-l2g"
                self.large[case] = datasets.seed_large(client, repo, size, seed)
            self.scale_digest = datasets.seed_scale(client, "bench-scale", self.sizes.scale_tags)
        print(f"seeded the source in {time.monotonic() - started:.1f}s", flush=True)

    def wipe_destination(self) -> None:
        """Empty the destination (same port); skopeo's blob-info cache starts afresh too."""
        self.dst.wipe()
        self._cache_generation += 1

    @property
    def skopeo_cache(self) -> Path:
        """This destination generation's private skopeo cache directory."""
        path = self.workdir / f"skopeo-cache-{self._cache_generation}"
        path.mkdir(exist_ok=True)
        return path

    def files_for(self, name: str, repos: list[str]) -> tuple[Path, Path]:
        """(image-syncer images file, skopeo YAML) covering `repos`."""
        images = tools.write_images(
            self.workdir / f"images-{name}.yaml", self.src.host, self.dst.host, repos
        )
        skopeo = tools.write_skopeo_yaml(self.workdir / f"skopeo-{name}.yaml", self.src.host, repos)
        return images, skopeo

    # -- one measured run ----------------------------------------------------------

    def _argv(self, tool: str, name: str, tag: str) -> tuple[list[str], dict[str, str], Path]:
        images, skopeo_yaml = self.files_for(name, self.repos_of(name))
        report_path = self.logs / f"{tag}.report.json"
        if tool == SYNCER:
            root = self.args.syncer_root.resolve()
            argv = tools.image_syncer_argv(self.auth, images, report_path, self.args.proc, root)
            env = tools.image_syncer_env(self.prefect_home, self.api.url)
            return argv, env, report_path
        cache = self.skopeo_cache
        argv = tools.skopeo_argv(
            skopeo_yaml, self.dst.host, cache, private_mount=self.private_cache
        )
        return argv, tools.skopeo_env(cache), report_path

    def repos_of(self, name: str) -> list[str]:
        """Repositories a named scenario covers."""
        if name in ("S", "S1"):
            repos = self.sizes.s_repos()
            return repos[:1] if name == "S1" else repos
        return {"L512": ["bench-l512"], "L2G": ["bench-l2g"], "scale": ["bench-scale"]}[name]

    def measure_tool(
        self,
        tool: str,
        case: str,
        name: str,
        run: int,
        *,
        wrap: list[str] | None = None,
        keep: bool = True,
    ) -> Record:
        """Run one tool on one scenario; record time, RSS, requests and outcome.

        `wrap` prefixes the command (a profiler); `keep=False` leaves the
        record out of the results (warm-up, profiling).
        """
        tag = f"{case.replace(' ', '_')}-{tool}-{run}-{time.monotonic_ns()}"
        argv, env, report_path = self._argv(tool, name, tag)
        src_before, dst_before = len(self.src.requests()), len(self.dst.requests())
        if tool == SYNCER:
            self.api.settle()
        load = os.getloadavg()[0]
        api_cpu = self.api.cpu_seconds()
        result = measure.run_measured(
            [*(wrap or []), *argv],
            env=env,
            cwd=self.args.syncer_root.resolve(),
            log_prefix=self.logs / tag,
            timeout=self.args.timeout,
        )
        record = self._record(tool, case, run, result)
        record["loadavg_1m_before"] = load
        record["src_requests"] = _counts(self.src.requests()[src_before:])
        record["dst_requests"] = _counts(self.dst.requests()[dst_before:])
        if tool == SYNCER:
            self.api.settle()  # the server's share of this run includes its backlog
            if api_cpu is not None:
                record["api_cpu_s"] = round((self.api.cpu_seconds() or 0.0) - api_cpu, 2)
            record.update(_syncer_report(report_path, result.stdout))
            err = (self.logs / tag).with_suffix(".err")
            record["phases"] = phases.syncer_phases(err, result.started_at, result.ended_at)
        _print_progress(record)
        if keep:
            self.records.append(record)
        return record

    def _record(self, tool: str, case: str, run: int, result: measure.Measured) -> Record:
        ok = result.returncode == 0 and not result.timed_out
        record: Record = {
            "case": case,
            "tool": tool,
            "run": run,
            "ok": ok,
            "returncode": result.returncode,
            "timed_out": result.timed_out,
            "wall": result.wall,
            "rss_tree_mib": result.tree_rss_peak_mib,
            "rss_main_mib": result.main_rss_peak_mib,
            "maxrss_mib": result.maxrss_mib,
            "processes_peak": result.processes_peak,
            "argv": result.argv,
        }
        if not ok:
            record["stderr_tail"] = result.stderr[-2000:]
            record["stdout_tail"] = result.stdout[-2000:]
        return record

    # -- verification ----------------------------------------------------------------

    def verify(self, record: Record, expected: list[tuple[str, str, str]]) -> None:
        """HEAD every expected `(repository, tag, digest)` at the destination (after counting)."""
        wrong = []
        with datasets.registry_client(self.dst.host) as client:
            for repo, tag, digest in expected:
                head = client.head_manifest(repo, tag)
                if head is None or head.digest != digest:
                    wrong.append(f"{repo}:{tag}")
        record["verified"] = not wrong
        if wrong:
            record["ok"] = False
            record["missing"] = wrong[:10]
            print(f"  !! {record['tool']} {record['case']}: wrong/missing {wrong[:5]}", flush=True)

    # -- scenarios -------------------------------------------------------------------

    def s_sequence(self, tool: str, run: int) -> None:
        """S cold on an empty destination, S no-op, then delta (+5 tags) and its removal."""
        self.wipe_destination()
        expected = [(i.repository, i.tag, i.digest) for i in self.small]
        self.verify(self.measure_tool(tool, "S cold", "S", run), expected)
        self.verify(self.measure_tool(tool, "S no-op", "S", run), expected)
        with datasets.registry_client(self.src.host) as client:
            delta = datasets.seed_delta(client, self.sizes)
            try:
                record = self.measure_tool(tool, "delta", "S", run)
                self.verify(record, [*expected, *((i.repository, i.tag, i.digest) for i in delta)])
            finally:
                datasets.delete_images(client, delta)

    def large_case(self, tool: str, case: str, run: int) -> None:
        """One large image into an empty destination."""
        self.wipe_destination()
        image = self.large[case]
        record = self.measure_tool(tool, case, case, run)
        self.verify(record, [(image.repository, image.tag, image.digest)])

    def curl_pipe(self, case: str, run: int) -> None:
        """POST an upload, then `curl GET | curl -T - PUT` the large blob: the practical limit."""
        self.wipe_destination()
        image = self.large[case]
        src = f"{self.src.url}/v2/{image.repository}/blobs/{image.layer_digest}"
        post = f"{self.dst.url}/v2/{image.repository}/blobs/uploads/"
        script = (
            f'loc=$(curl -sfi -X POST "{post}" | tr -d "\\r" | '
            "sed -n 's/^[Ll]ocation: //p') && "
            f'curl -sf "{src}" | curl -sf -T - "$loc&digest={image.layer_digest}"'
        )
        tag = f"{case}-curl-{run}"
        dst_before = len(self.dst.requests())
        result = measure.run_measured(
            ["sh", "-c", script],
            env=tools.skopeo_env(self.skopeo_cache),
            cwd=self.workdir,
            log_prefix=self.logs / tag,
            timeout=self.args.timeout,
        )
        record = self._record(CURL, case, run, result)
        record["bytes"] = image.layer_size
        record["dst_requests"] = _counts(self.dst.requests()[dst_before:])
        with datasets.registry_client(self.dst.host) as client:
            stored = client.head_blob(image.repository, image.layer_digest)
        record["verified"] = stored == image.layer_size
        record["ok"] = record["ok"] and record["verified"]
        _print_progress(record)
        self.records.append(record)

    def scale(self, tools_order: list[str]) -> None:
        """Prime the destination with the scale repository, then no-op re-sync it."""
        self.wipe_destination()
        with datasets.registry_client(self.dst.host) as client:
            datasets.seed_scale(client, "bench-scale", self.sizes.scale_tags)
        tags = datasets.scale_tags(self.sizes.scale_tags)
        expected = [("bench-scale", tag, self.scale_digest) for tag in tags]
        for run in range(self.args.runs):
            for tool in tools_order:
                record = self.measure_tool(tool, "scale no-op", "scale", run)
                record["tags"] = self.sizes.scale_tags
                self.verify(record, expected)

    def warm_up(self) -> None:
        """One unmeasured run per tool: creates Prefect's database, warms the page cache.

        Skipped in `--quick` mode (its numbers are not for reading).
        """
        if self.args.quick:
            return
        for tool in (SKOPEO, SYNCER):
            self.wipe_destination()
            record = self.measure_tool(tool, "warm-up", "S1", 0, keep=False)
            if not record["ok"]:
                raise RuntimeError(f"warm-up of {tool} failed: {record.get('stderr_tail')}")

    def run_all(self) -> None:
        """Every case, alternating the tools (and which goes first) per round."""
        self.warm_up()
        if self.args.profile_only:
            self.profile()
            return
        for run in range(self.args.runs):
            order = [SKOPEO, SYNCER] if run % 2 == 0 else [SYNCER, SKOPEO]
            print(f"--- round {run + 1}/{self.args.runs} ({' then '.join(order)})", flush=True)
            for tool in order:
                self.s_sequence(tool, run)
            for case in ("L512", "L2G"):
                for tool in order:
                    self.large_case(tool, case, run)
                self.curl_pipe(case, run)
        scale_tools = [SYNCER] if self.args.no_scale_skopeo else [SKOPEO, SYNCER]
        self.scale(scale_tools)
        if self.args.profile:
            self.profile()

    def profile(self) -> None:
        """py-spy one S cold and one S no-op image-syncer run, three ways each.

        `<stem>.idle.txt`: raw stacks with `--idle --threads` (wall-clock view of
        every thread); `<stem>.cpu.txt`: raw stacks, on-CPU samples only;
        `<stem>.svg`: the on-CPU flame graph. Summarise the raw files with
        `python bench/profile_summary.py FILE`.
        """
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        variants = (
            (".idle.txt", ["--format", "raw", "--idle", "--threads"]),
            (".cpu.txt", ["--format", "raw", "--threads"]),
            (".svg", ["--format", "flamegraph"]),
        )
        for case in ("S cold", "S no-op"):
            stem = RESULTS_DIR / f"profile-{case.replace(' ', '-').lower()}"
            for suffix, flags in variants:
                if case == "S cold":
                    self.wipe_destination()
                else:  # a synced destination, not timed
                    self._ensure_synced_s()
                out = f"{stem}{suffix}"
                wrap = ["py-spy", "record", "--subprocesses", "--rate", "100", *flags, "-o", out]
                record = self.measure_tool(SYNCER, case, "S", 0, wrap=[*wrap, "--"], keep=False)
                print(f"  profile {case}: {out} ok={record['ok']}", flush=True)

    def _ensure_synced_s(self) -> None:
        """Make the destination hold S (by a skopeo run), unless it already does."""
        with datasets.registry_client(self.dst.host) as client:
            first = self.small[0]
            head = client.head_manifest(first.repository, first.tag)
        if head is None:
            self.measure_tool(SKOPEO, "S cold", "S", 0, keep=False)

    def stop(self) -> None:
        """Stop both registries (by PID) and the Prefect API."""
        for server in (self.src, self.dst):
            server.stop()
        self.api.stop()


def _counts(requests: list[Any]) -> dict[str, int]:
    from tests.support.registry_server import classify_path

    counter = Counter(f"{r.method} {classify_path(r.path)}" for r in requests)
    return dict(sorted(counter.items()))


def _syncer_report(path: Path, stdout: str) -> Record:
    """In-flow seconds and image statuses from image-syncer's `--report` JSON."""
    summary = next((ln for ln in stdout.splitlines() if ln.startswith("Synchronization")), "")
    if not path.exists():
        return {"inflow": None, "summary": summary}
    doc = json.loads(path.read_text())
    statuses = Counter(image["status"] for image in doc.get("images", []))
    return {"inflow": doc.get("seconds"), "statuses": dict(statuses), "summary": summary}


def _print_progress(record: Record) -> None:
    inflow = record.get("inflow")
    flow = f" in-flow {inflow:.2f}s" if isinstance(inflow, float) else ""
    dst = sum((record.get("dst_requests") or {}).values())
    print(
        f"  {record['case']:<12} {record['tool']:<13} run {record['run']}: "
        f"{record['wall']:.2f}s{flow} rss {record['rss_tree_mib']:.0f} MiB "
        f"dst-req {dst} {'ok' if record['ok'] else 'FAILED rc=' + str(record['returncode'])}",
        flush=True,
    )


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
    tools.ensure_system_tools(postgres=args.api == "postgres")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="image-syncer-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    bench = Bench(args, workdir)
    try:
        bench.start()
        bench.run_all()
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
    print(report.render_all(bench.records))
    print(f"\nraw results: {path}")
    failed = [r for r in bench.records if not r["ok"]]
    for record in failed:
        print(f"FAILED: {record['tool']} {record['case']} run {record['run']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
