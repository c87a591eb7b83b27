"""`python flows/sync.py` with the embedded Prefect API records every run before it exits.

Without `PREFECT_API_URL` Prefect serves a temporary API from `PREFECT_HOME`'s
SQLite database and stops it when the process exits. After the process is
gone, that database must hold the parent flow run, one subflow run per rule
and every task run, all in final states, plus the Markdown report artifact.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.flows.helpers import auth_entry, delete_blob, first_layer, seed, write_document
from tests.support.images import build_image
from tests.support.registry_server import RegistryServer
from tests.support.sync_helpers import subprocess_env

pytestmark = [pytest.mark.flow, pytest.mark.registry]

ROOT = Path(__file__).resolve().parents[2]
#: Tags of the synced repository. Measured: with the CLI's wait for the
#: records removed, runs of 20-45 tags left a task run PENDING only once in
#: seven, so a small run checks the contract; it cannot reproduce the race.
TAGS = 4
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _rows(db: Path, query: str) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(query).fetchall()


def test_embedded_api_run_is_fully_recorded_after_the_process_exits(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
):
    S, D = src.host, dst.host
    app = {f"v{i}": build_image(600 + i, layer_sizes=(64,)) for i in range(TAGS)}
    for tag, image in app.items():
        seed(src, "team/app", [tag], image)
    broken = build_image(599)
    seed(src, "team/broken", ["v1"], broken)
    delete_blob(src, "team/broken", first_layer(broken))
    images = write_document(
        tmp_path / "images.yaml",
        {f"{S}/team/app": f"{D}/mirror/app", f"{S}/team/broken:v1": f"{D}/mirror/broken"},
    )
    auth = write_document(tmp_path / "auth.yaml", {s.host: auth_entry(s) for s in (src, dst)})
    home = tmp_path / "prefect-home"
    # No Prefect setting of this process (the harness's API among them) leaks in,
    # and no docker config.json of the machine may supply credentials.
    env = subprocess_env(home, {"DOCKER_CONFIG": str(home / "no-docker-config")})

    result = subprocess.run(
        [sys.executable, "flows/sync.py", "--auth", str(auth), "--images", str(images)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 1, output  # the broken image fails, the others sync
    assert "Prefect still has" not in result.stderr, output
    # One temporary API, the one the CLI starts early: no thread of the run (the
    # progress reporter, the event sender) fell back to Prefect starting another.
    assert result.stderr.count("Started a temporary Prefect API server") == 1, output
    assert "Starting temporary server" not in result.stderr, output
    db = home / "prefect.db"
    flow_runs = _rows(
        db,
        "SELECT fr.id, fr.name, fr.state_type, fr.parent_task_run_id, f.name AS flow "
        "FROM flow_run fr JOIN flow f ON f.id = fr.flow_id",
    )
    (parent,) = [run for run in flow_runs if run["flow"] == "image-syncer"]
    rules = [run for run in flow_runs if run["flow"] == "sync-rule"]
    assert len(flow_runs) == 1 + len(rules)
    assert sorted(run["name"] for run in rules) == [
        f"rule {S}/team/app -> {D}/mirror/app",
        f"rule {S}/team/broken:v1 -> {D}/mirror/broken",
    ]
    # What Prefect shows is the truth: the broken image fails its rule and the run.
    states = {run["name"]: run["state_type"] for run in flow_runs}
    assert states == {
        parent["name"]: "FAILED",
        f"rule {S}/team/app -> {D}/mirror/app": "COMPLETED",
        f"rule {S}/team/broken:v1 -> {D}/mirror/broken": "FAILED",
    }

    task_runs = _rows(db, "SELECT id, name, flow_run_id, state_type FROM task_run")
    # Each subflow hangs off a task run of the parent flow; the parent has no other tasks.
    wrappers = {rule["parent_task_run_id"] for rule in rules}
    assert {t["id"] for t in task_runs if t["flow_run_id"] == parent["id"]} == wrappers
    run_ids = {parent["id"], *(rule["id"] for rule in rules)}
    assert {task["flow_run_id"] for task in task_runs} <= run_ids
    unfinished = [dict(t) for t in task_runs if t["state_type"] not in FINAL_STATES]
    assert unfinished == []

    # One check per rule and one copy per changed image: no task run per blob or manifest.
    work = [t for t in task_runs if t["flow_run_id"] != parent["id"]]
    names = Counter(t["name"] for t in work)
    assert names == {
        f"check {S}/team/app -> {D}/mirror/app": 1,
        f"check {S}/team/broken:v1 -> {D}/mirror/broken": 1,
        **{f"copy {D}/mirror/app:{tag}": 1 for tag in app},
        f"copy {D}/mirror/broken:v1": 1,
    }
    failed = [t["name"] for t in work if t["state_type"] == "FAILED"]
    assert failed == [f"copy {D}/mirror/broken:v1"]

    (artifact,) = _rows(db, "SELECT type, data FROM artifact WHERE key = 'image-sync-report'")
    assert artifact["type"] == "markdown"
    assert f"{D}/mirror/broken:v1" in artifact["data"]
    assert f"{D}/mirror/app:v{TAGS - 1}" in artifact["data"]
