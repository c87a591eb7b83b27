"""The benchmark's fixtures and its one measured run: registries, links, APIs, contenders.

`Bench` owns two `plain` docker-registry instances, the seeded datasets, the
Prefect APIs image-syncer reports to and, in WAN mode, a delay line in front
of each registry. `measure_tool` runs one contender on one scenario and
records wall time, RSS, the registries' requests and (for image-syncer and
the Prefect floor) in-flow seconds, API CPU and phases. The scenarios
themselves are in `bench/scenarios.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import datasets, measure, phases, tools
from bench.api import PrefectApi
from bench.datasets import DatasetSizes, LargeImage, SeededImage

__all__ = ["CURL", "FLOOR_ASYNC", "FLOOR_OURS", "ORIGINAL", "SKOPEO", "SYNCER", "Bench", "Record"]

SKOPEO, ORIGINAL, SYNCER, CURL = "skopeo", "original", "image-syncer", "curl pipe"
FLOOR_OURS, FLOOR_ASYNC = "floor (ours)", "floor (async)"
#: Contenders that report to a Prefect API.
PREFECT_TOOLS = (SYNCER, FLOOR_OURS, FLOOR_ASYNC)
Record = dict[str, Any]


class Bench:
    """Two registries, the seeded datasets, the APIs, and every measured run."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        from tests.support.registry_server import RegistryServer

        self.args = args
        self.sizes = DatasetSizes.quick() if args.quick else DatasetSizes.full()
        self.workdir = workdir
        self.src = RegistryServer("plain", workdir / "src")
        self.dst = RegistryServer("plain", workdir / "dst")
        self.apis: dict[str, PrefectApi] = {}
        self.primary = args.api
        self.original = tools.original_binary()
        self.records: list[Record] = []
        self.private_cache = False
        self._cache_generation = 0
        self.large: dict[str, LargeImage] = {}
        self.small: list[SeededImage] = []
        self.many: list[SeededImage] = []
        self.scale_digest = ""
        #: `(source host, destination host)` per link; "wan" is added by `scenarios.wan`.
        self.links: dict[str, tuple[str, str]] = {}

    @property
    def contenders(self) -> list[str]:
        """skopeo, the original (when this machine has it) and image-syncer."""
        return [SKOPEO, *([ORIGINAL] if self.original else []), SYNCER]

    # -- set-up -------------------------------------------------------------------

    def start(self) -> None:
        """Start both registries and the primary API, write configurations, seed the source."""
        self.src.start()
        self.dst.start()
        self.links["loopback"] = (self.src.host, self.dst.host)
        self.private_cache = tools.unshare_works()
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.start_api(self.primary)
        self.seed()

    def start_api(self, kind: str) -> PrefectApi:
        """Start (once) the Prefect API of `kind`; each kind has its own PREFECT_HOME."""
        if kind not in self.apis:
            api = PrefectApi(kind, self.workdir)
            api.start()
            self.apis[kind] = api
        return self.apis[kind]

    def stop_api(self, kind: str) -> None:
        """Stop a secondary API (its CPU would otherwise be noise in later runs)."""
        api = self.apis.pop(kind, None)
        if api is not None:
            api.stop()

    def seed(self) -> None:
        """Push S, L512, L2G, the many-rules and the scale repositories into the source."""
        started = time.monotonic()
        with datasets.registry_client(self.src.host) as client:
            self.small = datasets.seed_small_set(client, self.sizes)
            for case, size, seed in (("L512", self.sizes.l512, 512), ("L2G", self.sizes.l2g, 2048)):
                repo = "bench-l512" if case == "L512" else "bench-l2g"
                self.large[case] = datasets.seed_large(client, repo, size, seed)
            self.many = datasets.seed_many_rules(client, self.sizes)
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

    def repos_of(self, name: str) -> list[str]:
        """Repositories a named scenario covers."""
        if name in ("S", "S1"):
            repos = self.sizes.s_repos()
            return repos[:1] if name == "S1" else repos
        if name == "rules":
            return self.sizes.rule_repos()
        return {"L512": ["bench-l512"], "L2G": ["bench-l2g"], "scale": ["bench-scale"]}[name]

    # -- one measured run ----------------------------------------------------------

    def _files(self, name: str, link: str) -> tuple[Path, Path, Path]:
        """(auth file, images file, skopeo YAML) for scenario `name` over `link`."""
        src, dst = self.links[link]
        repos = self.repos_of(name)
        auth = tools.write_auth(self.workdir / f"auth-{link}.yaml", [src, dst])
        images = tools.write_images(self.workdir / f"images-{name}-{link}.yaml", src, dst, repos)
        skopeo = tools.write_skopeo_yaml(self.workdir / f"skopeo-{name}-{link}.yaml", src, repos)
        return auth, images, skopeo

    def _argv(
        self, tool: str, name: str, link: str, tag: str, api: str, extra: list[str]
    ) -> tuple[list[str], dict[str, str], Path]:
        auth, images, skopeo_yaml = self._files(name, link)
        report_path = self.logs / f"{tag}.report.json"
        if tool in PREFECT_TOOLS:
            home = self.workdir / f"prefect-home-{api}"
            home.mkdir(exist_ok=True)
            env = tools.image_syncer_env(home, self.apis[api].url)
            root = self.args.syncer_root.resolve()
            if tool == SYNCER:
                argv = tools.image_syncer_argv(auth, images, report_path, self.args.proc, root)
            else:
                argv = tools.floor_argv(
                    len(self.repos_of(name)), "ours" if tool == FLOOR_OURS else "async", report_path
                )
            return [*argv, *extra], env, report_path
        if tool == ORIGINAL:
            assert self.original is not None
            argv = tools.original_argv(self.original, auth, images, self.args.proc)
            return argv, tools.skopeo_env(self.skopeo_cache), report_path
        cache = self.skopeo_cache
        _, dst = self.links[link]
        argv = tools.skopeo_argv(skopeo_yaml, dst, cache, private_mount=self.private_cache)
        return argv, tools.skopeo_env(cache), report_path

    def measure_tool(
        self,
        tool: str,
        case: str,
        name: str,
        run: int,
        *,
        link: str = "loopback",
        api: str | None = None,
        extra: list[str] | None = None,
        wrap: list[str] | None = None,
        keep: bool = True,
    ) -> Record:
        """Run one tool on one scenario; record time, RSS, requests and outcome.

        `api` is the Prefect set-up (default: the primary one), `extra` more
        flags for image-syncer, `wrap` a command prefix (a profiler);
        `keep=False` leaves the record out of the results (warm-up, priming).
        """
        api = api or self.primary
        tag = f"{case.replace(' ', '_')}-{tool.replace(' ', '_')}-{run}-{time.monotonic_ns()}"
        argv, env, report_path = self._argv(tool, name, link, tag, api, extra or [])
        server = self.apis[api] if tool in PREFECT_TOOLS else None
        src_before, dst_before = len(self.src.requests()), len(self.dst.requests())
        if server is not None:
            server.settle(self.args.settle)
        load = os.getloadavg()[0]
        api_cpu = server.cpu_seconds() if server is not None else None
        result = measure.run_measured(
            [*(wrap or []), *argv],
            env=env,
            cwd=self.args.syncer_root.resolve(),
            log_prefix=self.logs / tag,
            timeout=self.args.timeout,
        )
        record = self._record(tool, case, run, result)
        record.update(link=link, loadavg_1m_before=load, rules=len(self.repos_of(name)))
        record["src_requests"] = _counts(self.src.requests()[src_before:])
        record["dst_requests"] = _counts(self.dst.requests()[dst_before:])
        if server is not None:
            record["api"] = api
            server.settle(self.args.settle)  # the server's share of this run includes its backlog
            if api_cpu is not None:
                record["api_cpu_s"] = round((server.cpu_seconds() or 0.0) - api_cpu, 2)
            record.update(_report_fields(report_path, result.stdout))
            err = (self.logs / tag).with_suffix(".err")
            record["phases"] = phases.syncer_phases(err, result.started_at, result.ended_at)
        if extra:
            record["flags"] = " ".join(extra)
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

    def keep(self, record: Record) -> None:
        """Add a record measured outside `measure_tool` (the curl pipe, the demo)."""
        _print_progress(record)
        self.records.append(record)

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

    def stop(self) -> None:
        """Stop both registries (by PID) and every Prefect API."""
        for server in (self.src, self.dst):
            server.stop()
        for kind in list(self.apis):
            self.stop_api(kind)


def _counts(requests: list[Any]) -> dict[str, int]:
    from tests.support.registry_server import classify_path

    counter = Counter(f"{r.method} {classify_path(r.path)}" for r in requests)
    return dict(sorted(counter.items()))


def _report_fields(path: Path, stdout: str) -> Record:
    """In-flow seconds (and image statuses) from a `--report` JSON file."""
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
    where = f"{record.get('link', 'loopback')}" + (f"/{record['api']}" if "api" in record else "")
    print(
        f"  {record['case']:<14} {record['tool']:<13} {where:<18} run {record['run']}: "
        f"{record['wall']:.2f}s{flow} rss {record['rss_tree_mib']:.0f} MiB "
        f"dst-req {dst} {'ok' if record['ok'] else 'FAILED rc=' + str(record['returncode'])}",
        flush=True,
    )
