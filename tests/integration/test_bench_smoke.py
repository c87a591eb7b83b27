"""Smoke test of the benchmark instrument: `python bench/run.py --quick` runs end to end.

Tiny datasets, one run per tool and case. Only the exit code and the shape of
the printed table are checked, never timings.
"""

from __future__ import annotations

import json
import os
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
    assert any(line.startswith("| case | skopeo s | image-syncer s | ratio |") for line in lines)
    s_cold = [line for line in lines if line.startswith("| S cold |")]
    assert s_cold, log
    cells = [cell.strip() for cell in s_cold[0].strip("|").split("|")]
    assert cells[3].endswith("x"), s_cold[0]  # the image-syncer / skopeo ratio
    doc = json.loads(output.read_text())
    records = doc["records"]
    assert {r["tool"] for r in records} >= {"skopeo", "image-syncer", "curl pipe"}
    assert all(r["ok"] for r in records)
    # image-syncer reported to the long-running PostgreSQL-backed API, whose CPU was measured.
    assert doc["api"] == "postgres"
    syncer = [r for r in records if r["tool"] == "image-syncer"]
    assert syncer and all(r["api_cpu_s"] > 0 for r in syncer), syncer
