"""Smoke test of the benchmark instrument: `python bench/run.py --quick` runs end to end.

Tiny datasets, one run per tool and case. Only the exit code and the shape of
the printed table are checked, never timings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.registry, pytest.mark.flow, pytest.mark.slow]


@pytest.mark.timeout(480)
def test_bench_quick_runs_and_prints_the_ratio_table(tmp_path: Path) -> None:
    for binary in ("docker-registry", "skopeo", "curl"):
        if shutil.which(binary) is None:
            message = f"{binary} is not installed (.ci/run and bash .ci/setup install it)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    output = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=450,
        check=False,
    )
    log = f"stdout:\n{completed.stdout[-4000:]}\nstderr:\n{completed.stderr[-4000:]}"
    assert completed.returncode == 0, log
    lines = completed.stdout.splitlines()
    header = next((ln for ln in lines if ln.startswith("| case | skopeo s |")), None)
    assert header is not None and "| image-syncer s |" in header, log
    s_cold = [line for line in lines if line.startswith("| S cold |")]
    wan = lines.index("## WAN delay line (medians)")
    assert any(line.startswith("| S cold |") for line in lines[wan : wan + 4]), log
    cells = [cell.strip() for cell in s_cold[0].strip("|").split("|")]
    ratio = header.strip("|").split("|").index(" / skopeo (in-flow) ")
    assert re.fullmatch(r"\d+\.\d+x \(\d+\.\d+x\)", cells[ratio]), s_cold[0]
    assert any(line.startswith("| 200-rule no-op |") for line in lines), log
    targets = lines.index("## Targets (issue 13)")
    assert any("| met |" in ln or "| MISSED |" in ln for ln in lines[targets:]), log
    doc = json.loads(output.read_text())
    records = doc["records"]
    assert {r["tool"] for r in records} >= {
        "skopeo",
        "image-syncer",
        "curl pipe",
        "floor (ours)",
        "floor (async)",
    }
    assert all(r["ok"] for r in records), [r for r in records if not r["ok"]]
    assert {r.get("link") for r in records if r["tool"] == "skopeo"} == {"loopback", "wan"}
    # image-syncer reported to the long-running PostgreSQL-backed API, whose CPU was measured,
    # and once more to the temporary API a plain CLI run starts.
    assert doc["api"] == "postgres"
    syncer = [r for r in records if r["tool"] == "image-syncer"]
    hosted = [r for r in syncer if r["api"] == "postgres"]
    assert hosted and all(r["api_cpu_s"] > 0 for r in hosted), hosted
    assert any(r["api"] == "temporary" and r["case"] == "1-rule no-op" for r in syncer)
