"""Helpers of the reliability tier: proxied run files, seeding, reading back, subprocesses."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from syncer_core import mediatypes as mt
from syncer_core.digest import compute_digest
from syncer_core.manifest import RawManifest
from tests.support.registry_server import RegistryServer, auth_entry
from tests.support.stream_copy_probe import pattern_chunks
from tests.support.sync_helpers import registry_client as client_for
from tests.support.sync_helpers import subprocess_env, tag_digests, write_document

__all__ = [
    "ROOT",
    "BlobStore",
    "CliRun",
    "MiB",
    "auth_entry",
    "client_for",
    "run_cli",
    "seed_large_image",
    "start_cli",
    "subprocess_env",
    "tag_digests",
    "write_document",
]

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


@dataclass
class CliRun:
    """The outcome of one image-syncer run (in-process or a subprocess).

    Attributes:
        code: the exit code (negative: killed by that signal).
        stdout / stderr: what it printed.
        report: the parsed `--report` JSON, if one was written.
    """

    code: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None = None

    @property
    def images(self) -> list[dict[str, Any]]:
        """Every image result of the report."""
        assert self.report is not None, self.describe()
        return list(self.report["images"])

    def statuses(self) -> dict[str, str]:
        """`target -> status` of every image."""
        return {image["target"]: image["status"] for image in self.images}

    def failed(self) -> dict[str, str]:
        """`target -> reason` of the failed images."""
        return {i["target"]: i["reason"] for i in self.images if i["status"] == "failed"}

    def describe(self) -> str:
        """Everything useful when an assertion fails."""
        return f"exit {self.code}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-5000:]}"


def seed_large_image(
    server: RegistryServer, repository: str, tag: str, size: int, *, seed: int = 7
) -> tuple[str, str]:
    """Push an image with one `size`-byte layer, streamed from a generator (never held).

    Returns:
        `(manifest digest, layer digest)`.
    """
    hasher = hashlib.sha256()
    for piece in pattern_chunks(size, seed=seed):
        hasher.update(piece)
    layer = f"sha256:{hasher.hexdigest()}"
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer]},
            "config": {"Labels": {"seed": str(seed)}},
        },
        sort_keys=True,
    ).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_V2,
        "config": {
            "mediaType": mt.DOCKER_CONFIG,
            "size": len(config),
            "digest": compute_digest(config),
        },
        "layers": [{"mediaType": mt.DOCKER_LAYER, "size": size, "digest": layer}],
    }
    manifest = RawManifest(mt.DOCKER_MANIFEST_V2, json.dumps(doc, indent=3).encode())
    with client_for(server) as client:
        if client.head_blob(repository, layer) is None:
            client.push_blob(repository, layer, pattern_chunks(size, seed=seed), size=size)
        client.push_blob_bytes(repository, config)
        client.put_manifest(repository, tag, manifest)
    return manifest.digest, layer


def start_cli(args: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `python flows/sync.py ARGS` in its own session; output goes to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "flows/sync.py", *args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_cli(args: Sequence[str], env: Mapping[str, str], *, timeout: float = 240) -> CliRun:
    """Run `python flows/sync.py ARGS` to completion."""
    done = subprocess.run(
        [sys.executable, "flows/sync.py", *args],
        cwd=ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    report = None
    if "--report" in args:
        path = Path(args[list(args).index("--report") + 1])
        report = json.loads(path.read_text()) if path.exists() else None
    return CliRun(done.returncode, done.stdout, done.stderr, report)


class BlobStore:
    """A second origin that blob GETs are redirected to, like object storage behind a CDN.

    It records the headers of every request it gets and serves the blob by
    fetching it from the registry itself, with the test's own credentials
    (as a presigned storage URL would).
    """

    def __init__(self, registry: RegistryServer):
        self.registry = registry
        self.seen: list[dict[str, str]] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: requests are recorded instead."""

            def do_GET(self) -> None:
                store.seen.append({k.lower(): v for k, v in self.headers.items()})
                store._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def redirect(self, target: str) -> str:
        """Where the proxy sends a blob GET for `target` (a registry path)."""
        return self.origin + "/storage" + target.split("?", 1)[0]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.removeprefix("/storage")
        with client_for(self.registry) as client:
            repository, _, digest = path.removeprefix("/v2/").rpartition("/blobs/")
            with client.open_blob(repository, digest) as blob:
                data = b"".join(blob.iter_chunks())
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> BlobStore:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
