"""Long copies are never silent: live display on a terminal, log lines without one, an artifact.

The CLI runs as its own process (its stderr a pipe, or a pseudo-terminal)
against the session's Prefect API, copying one image with a 48 MiB layer from
a source throttled to 16 MiB/s by our proxy, so the layer streams for ~3 s and
the progress shows up while it does.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flows.helpers import auth_entry, seed, write_document
from tests.support.images import TestImage, build_image
from tests.support.registry_server import RegistryServer
from tests.support.sync_helpers import subprocess_env
from tests.support.zoo import FaultProxy

pytestmark = [pytest.mark.flow, pytest.mark.registry]

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
LAYER = 48 * MiB


@pytest.fixture
def big_image(src: RegistryServer) -> TestImage:
    image = build_image(900, layer_sizes=(LAYER,))
    seed(src, "team/big", ["v1"], image)
    return image


@pytest.fixture
def slow_source(src: RegistryServer) -> Iterator[FaultProxy]:
    with FaultProxy(src.host, download_rate=16 * MiB) as proxy:
        yield proxy


def _command(tmp_path: Path, source: str, dst: RegistryServer) -> list[str]:
    images = write_document(
        tmp_path / "images.yaml", {f"{source}/team/big:v1": f"{dst.host}/m/big"}
    )
    auth = write_document(
        tmp_path / "auth.yaml", {source: {"insecure": True}, dst.host: auth_entry(dst)}
    )
    return [sys.executable, "flows/sync.py", "--auth", str(auth), "--images", str(images)]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url  # the session's harness: no server start per run
    assert api
    return subprocess_env(tmp_path / "prefect-home", {"PREFECT_API_URL": api, **extra})


def _layer(image: TestImage) -> str:
    return next(digest for digest, data in image.blobs.items() if len(data) == LAYER)


def test_without_a_terminal_long_blobs_log_progress_lines_and_the_artifact_moves(
    prefect_api: None,
    slow_source: FaultProxy,
    dst: RegistryServer,
    big_image: TestImage,
    tmp_path: Path,
):
    command = _command(tmp_path, slow_source.host, dst)
    env = _env(tmp_path, IMAGE_SYNCER_PROGRESS_INTERVAL="1")

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    target = f"{dst.host}/m/big:v1"
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if f"copying {target}: 2 blobs, 48." in line)
    end = next(i for i, line in enumerate(lines) if f"copied {target}: 48." in line)
    streaming = [
        line
        for line in lines[start:end]
        if f"streaming {_layer(big_image)[:19]}… -> {target}" in line and " of 48.0 MiB (" in line
    ]
    assert len(streaming) >= 2, output  # ~3 s of streaming, a line a second
    assert any("%) at " in line and "(100%)" not in line for line in streaming), streaming
    assert " MiB/s)" in lines[end]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["image-sync-progress"])),
        )
    newest = max(artifacts, key=lambda a: a.created)
    assert float(newest.data) == 100.0
    assert newest.description.startswith("images 1/1 · blobs 2/2 · 48.")


def _plain(text: str) -> str:
    """`text` without terminal control sequences (colours, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _run_in_terminal(command: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as stdin/stdout/stderr; return (code, output)."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=child, stdout=child, stderr=child, close_fds=True
    )
    os.close(child)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # the child side closed: the process is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    return code, b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_one_live_display_shows_images_bytes_and_the_transfer_in_flight(
    prefect_api: None,
    slow_source: FaultProxy,
    dst: RegistryServer,
    big_image: TestImage,
    tmp_path: Path,
):
    command = _command(tmp_path, slow_source.host, dst)
    env = _env(tmp_path, TERM="xterm", COLUMNS="160")
    env.pop("IMAGE_SYNCER_PROGRESS", None)

    code, output = _run_in_terminal(command, env, timeout=240)

    assert code == 0, output
    target = f"{dst.host}/m/big:v1"
    # The display redraws in place (cursor up / erase line), it does not scroll.
    assert "\x1b[2K" in output or "\x1b[1A" in output, output[-3000:]
    frames = [_plain(f) for f in output.split("\x1b[2K") if "images " in _plain(f)]
    assert any("images 0/1 · blobs " in f and " of 48.0 MiB" in f for f in frames), frames[-5:]
    layer = _layer(big_image)[:19]
    in_flight = [f for f in frames if f"{layer}… -> {target}" in f]
    assert in_flight, output[-3000:]
    assert any("(100%)" not in f and "%) at " in f for f in in_flight)
    text = _plain(output)
    assert "images 1/1 · blobs 2/2" in text
    assert "streaming " not in text  # the live display replaces the log lines
    assert f"copied {target}: 48." in text  # log lines still print, above the display


def test_artifact_updates_from_the_reporter_thread_go_to_the_api_in_force_where_it_started(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI's temporary API and a test harness are context-local settings: a
    # thread that does not run in a copy of the flow's context sees the
    # process-wide ones, where a plain CLI run has no API at all, and Prefect
    # then starts a second temporary server just for the progress artifact.
    import logging

    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows import progress as progress_module
    from syncer_core.sync.progress import RunProgress

    seen: list[str | None] = []

    def record(artifact: object, percent: float, description: str) -> None:
        seen.append(get_current_settings().api.url)

    monkeypatch.setattr(progress_module, "update_progress_artifact", record)
    monkeypatch.setattr(progress_module, "create_progress_artifact", lambda *a, **k: uuid.uuid4())
    monkeypatch.setattr(progress_module, "_ARTIFACT_EVERY", 0.02)
    monkeypatch.setenv("IMAGE_SYNCER_PROGRESS", "lines")
    run = RunProgress()
    run.images_found(4, 0)
    here = "http://127.0.0.1:9/only-in-this-context/api"  # never called: `record` stands in
    with (
        temporary_settings(updates={PREFECT_API_URL: here}),
        progress_module.report_progress(run, logging.getLogger("test")),
    ):
        for _ in range(3):
            run.image_done()
            time.sleep(0.1)
    assert len(seen) >= 2, seen  # updates from the thread, then the final one
    assert set(seen) == {here}
