"""The benchmark's scenarios, each measured side by side for every contender.

Order of a full run (`run_all`):
1. warm-up (unmeasured: Prefect's database, the page cache);
2. loopback rounds: S cold → S no-op → delta, then L512 / L2G and the curl
   pipe, contenders rotating which goes first;
3. the 5,000-tag no-op, the 200-rule no-op and the Prefect floor on the
   primary API;
4. Prefect set-ups (`--setups`): image-syncer's S cold / S no-op, fixed rule
   concurrencies, a one-rule no-op and the floor on each other API, and the
   demo's first run on the embedded API;
5. WAN (`--wan RTT/RATE`): S cold → S no-op → delta with a delay line in
   front of each registry.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bench import datasets, measure, tools
from bench.harness import (
    CURL,
    FLOOR_ASYNC,
    FLOOR_OURS,
    SKOPEO,
    SYNCER,
    Bench,
)

__all__ = ["run_all"]


def _rotated(items: list[str], run: int) -> list[str]:
    """`items` starting at `run % len`: who goes first changes every round."""
    k = run % len(items)
    return [*items[k:], *items[:k]]


def s_sequence(bench: Bench, tool: str, run: int, link: str = "loopback") -> None:
    """S cold on an empty destination, S no-op, then delta (+5 tags) and its removal."""
    bench.wipe_destination()
    expected = [(i.repository, i.tag, i.digest) for i in bench.small]
    bench.verify(bench.measure_tool(tool, "S cold", "S", run, link=link), expected)
    bench.verify(bench.measure_tool(tool, "S no-op", "S", run, link=link), expected)
    with datasets.registry_client(bench.src.host) as client:
        delta = datasets.seed_delta(client, bench.sizes)
        try:
            record = bench.measure_tool(tool, "delta", "S", run, link=link)
            bench.verify(record, [*expected, *((i.repository, i.tag, i.digest) for i in delta)])
        finally:
            datasets.delete_images(client, delta)


def large_case(bench: Bench, tool: str, case: str, run: int) -> None:
    """One large image into an empty destination."""
    bench.wipe_destination()
    image = bench.large[case]
    record = bench.measure_tool(tool, case, case, run)
    bench.verify(record, [(image.repository, image.tag, image.digest)])


def curl_pipe(bench: Bench, case: str, run: int) -> None:
    """POST an upload, then `curl GET | curl -T - PUT` the large blob: the practical limit."""
    bench.wipe_destination()
    image = bench.large[case]
    src = f"{bench.src.url}/v2/{image.repository}/blobs/{image.layer_digest}"
    post = f"{bench.dst.url}/v2/{image.repository}/blobs/uploads/"
    script = (
        f'loc=$(curl -sfi -X POST "{post}" | tr -d "\\r" | '
        "sed -n 's/^[Ll]ocation: //p') && "
        f'curl -sf "{src}" | curl -sf -T - "$loc&digest={image.layer_digest}"'
    )
    result = measure.run_measured(
        ["sh", "-c", script],
        env=tools.skopeo_env(bench.skopeo_cache),
        cwd=bench.workdir,
        log_prefix=bench.logs / f"{case}-curl-{run}",
        timeout=bench.args.timeout,
    )
    record = bench._record(CURL, case, run, result)
    record["bytes"] = image.layer_size
    with datasets.registry_client(bench.dst.host) as client:
        stored = client.head_blob(image.repository, image.layer_digest)
    record["verified"] = stored == image.layer_size
    record["ok"] = record["ok"] and record["verified"]
    bench.keep(record)


def scale(bench: Bench) -> None:
    """Prime the destination with the scale repository, then no-op re-sync it."""
    bench.wipe_destination()
    with datasets.registry_client(bench.dst.host) as client:
        datasets.seed_scale(client, "bench-scale", bench.sizes.scale_tags)
    tags = datasets.scale_tags(bench.sizes.scale_tags)
    expected = [("bench-scale", tag, bench.scale_digest) for tag in tags]
    contenders = [t for t in bench.contenders if t != SKOPEO or not bench.args.no_scale_skopeo]
    for run in range(bench.args.scale_runs):
        for tool in _rotated(contenders, run):
            record = bench.measure_tool(tool, "scale no-op", "scale", run)
            record["tags"] = bench.sizes.scale_tags
            bench.verify(record, expected)


def many_rules(bench: Bench) -> None:
    """The 200-rule no-op: one rule per repository, each holding one tiny image."""
    bench.wipe_destination()
    expected = [(i.repository, i.tag, i.digest) for i in bench.many]
    bench.verify(bench.measure_tool(SKOPEO, "prime", "rules", 0, keep=False), expected)
    for run in range(bench.args.scale_runs):
        for tool in _rotated(bench.contenders, run):
            bench.verify(bench.measure_tool(tool, "200-rule no-op", "rules", run), expected)
    floors(bench, bench.primary, "rules", "200-rule floor", runs=bench.args.scale_runs)


def floors(
    bench: Bench, api: str, name: str = "S", case: str = "floor", runs: int | None = None
) -> None:
    """The Prefect floor: as many trivial rule subflows as `name` has rules, both models."""
    for run in range(bench.args.setup_runs if runs is None else runs):
        for tool in _rotated([FLOOR_OURS, FLOOR_ASYNC], run):
            bench.measure_tool(tool, case, name, run, api=api)


def prefect_setup(bench: Bench, api: str) -> None:
    """image-syncer on one Prefect set-up: S cold / no-op, fixed concurrencies, the floor.

    `--quick` keeps only the one-rule no-op and one floor run: the smoke test
    proves the set-up is measured, not what it costs.
    """
    bench.start_api(api)
    expected = [(i.repository, i.tag, i.digest) for i in bench.small]
    try:
        for run in range(bench.args.setup_runs):
            if not bench.args.quick:
                _s_on(bench, api, run, expected)
            one = bench.measure_tool(SYNCER, "1-rule no-op", "S1", run, api=api)
            bench.verify(one, [e for e in expected if e[0] == bench.repos_of("S1")[0]])
        if bench.args.quick:
            bench.measure_tool(FLOOR_OURS, "floor", "S", 0, api=api)
        else:
            floors(bench, api)
    finally:
        if api != bench.primary:
            bench.stop_api(api)


def _s_on(bench: Bench, api: str, run: int, expected: list[tuple[str, str, str]]) -> None:
    """S cold, S no-op with the default and each fixed rule concurrency, on one API."""
    bench.wipe_destination()
    bench.verify(bench.measure_tool(SYNCER, "S cold", "S", run, api=api), expected)
    bench.verify(bench.measure_tool(SYNCER, "S no-op", "S", run, api=api), expected)
    for fixed in bench.args.fixed_concurrency:
        flags = ["--rule-concurrency", str(fixed)]
        record = bench.measure_tool(SYNCER, "S no-op", "S", run, api=api, extra=flags)
        bench.verify(record, expected)


def demo_first_run(bench: Bench) -> None:
    """The README's main command on a fresh PREFECT_HOME and empty registries, whole process."""
    home = Path(tempfile.mkdtemp(prefix="bench-demo-home-", dir=bench.workdir))
    state = bench.workdir / "demo-state"
    env = tools.image_syncer_env(home)
    argv = [sys.executable, str(tools.PROJECT_ROOT / "deployments" / "demo.py")]
    for run, label in enumerate(("demo first run", "demo re-run")):
        result = measure.run_measured(
            [*argv, "--state", str(state), *(["--fresh"] if run == 0 else [])],
            env=env,
            cwd=tools.PROJECT_ROOT,
            log_prefix=bench.logs / f"demo-{run}",
            timeout=bench.args.timeout,
        )
        record = bench._record(SYNCER, label, 0, result)
        record.update(api="temporary", link="loopback")
        bench.keep(record)
    shutil.rmtree(home, ignore_errors=True)


def wan(bench: Bench) -> None:
    """S cold → no-op → delta for every contender behind one delay line per registry."""
    from bench.delayline import DelayLine

    rtt, rate = bench.args.wan
    lines = [
        DelayLine(host, rtt_ms=rtt, rate_mbit=rate) for host in (bench.src.host, bench.dst.host)
    ]
    for line in lines:
        line.start()
    try:
        bench.links["wan"] = (lines[0].host, lines[1].host)
        print(f"--- WAN: {rtt:g} ms RTT, {rate:g} Mbit/s per registry", flush=True)
        for run in range(bench.args.wan_runs):
            for tool in _rotated(bench.contenders, run):
                s_sequence(bench, tool, run, link="wan")
    finally:
        for line in lines:
            line.stop()


def warm_up(bench: Bench) -> None:
    """One unmeasured run per contender: creates Prefect's database, warms the page cache.

    Skipped in `--quick` mode (its numbers are not for reading).
    """
    if bench.args.quick:
        return
    for tool in (*bench.contenders, FLOOR_OURS):
        bench.wipe_destination()
        record = bench.measure_tool(tool, "warm-up", "S1", 0, keep=False)
        if not record["ok"]:
            raise RuntimeError(f"warm-up of {tool} failed: {record.get('stderr_tail')}")


def loopback_rounds(bench: Bench) -> None:
    """`--runs` rounds of the S sequence (the first `--large-runs` with L512, L2G, curl pipe)."""
    for run in range(bench.args.runs):
        order = _rotated(bench.contenders, run)
        print(f"--- round {run + 1}/{bench.args.runs} ({' then '.join(order)})", flush=True)
        for tool in order:
            s_sequence(bench, tool, run)
        if run >= bench.args.large_runs:
            continue
        for case in ("L512", "L2G"):
            for tool in order:
                large_case(bench, tool, case, run)
            curl_pipe(bench, case, run)


def run_all(bench: Bench) -> None:
    """Every scenario the flags ask for, in the order of this module's docstring."""
    warm_up(bench)
    if bench.args.profile_only:
        profile(bench)
        return
    loopback_rounds(bench)
    scale(bench)
    many_rules(bench)
    floors(bench, bench.primary)
    for api in bench.args.setups:
        prefect_setup(bench, api)
    if "temporary" in bench.args.setups and not bench.args.quick:
        demo_first_run(bench)
    if bench.args.wan is not None:
        wan(bench)
    if bench.args.profile:
        profile(bench)


def profile(bench: Bench) -> None:
    """py-spy one S cold and one S no-op image-syncer run, three ways each.

    `<stem>.idle.txt`: raw stacks with `--idle --threads` (wall-clock view of
    every thread); `<stem>.cpu.txt`: raw stacks, on-CPU samples only;
    `<stem>.svg`: the on-CPU flame graph. Summarise the raw files with
    `python bench/profile_summary.py FILE`.
    """
    results = tools.PROJECT_ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    variants = (
        (".idle.txt", ["--format", "raw", "--idle", "--threads"]),
        (".cpu.txt", ["--format", "raw", "--threads"]),
        (".svg", ["--format", "flamegraph"]),
    )
    for case in ("S cold", "S no-op"):
        stem = results / f"profile-{case.replace(' ', '-').lower()}"
        for suffix, flags in variants:
            if case == "S cold":
                bench.wipe_destination()
            else:  # a synced destination, not timed
                _ensure_synced_s(bench)
            out = f"{stem}{suffix}"
            wrap = ["py-spy", "record", "--subprocesses", "--rate", "100", *flags, "-o", out]
            record = bench.measure_tool(SYNCER, case, "S", 0, wrap=[*wrap, "--"], keep=False)
            print(f"  profile {case}: {out} ok={record['ok']}", flush=True)


def _ensure_synced_s(bench: Bench) -> None:
    """Make the destination hold S (by a skopeo run), unless it already does."""
    with datasets.registry_client(bench.dst.host) as client:
        first = bench.small[0]
        head = client.head_manifest(first.repository, first.tag)
    if head is None:
        bench.measure_tool(SKOPEO, "S cold", "S", 0, keep=False)
