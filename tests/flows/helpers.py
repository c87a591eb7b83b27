"""Helpers of the flow tier: run the CLI in-process, seed and read registries, count requests."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from syncer_core import mediatypes as mt
from syncer_core.digest import compute_digest
from syncer_core.manifest import ImageIndex, ImageManifest, RawManifest
from tests.support.images import TestImage, push_image
from tests.support.registry_server import (
    LoggedRequest,
    RegistryServer,
    auth_entry,
    classify_path,
)
from tests.support.sync_helpers import registry_client, tag_digests, write_document

__all__ = [
    "RequestMark",
    "SyncRun",
    "Syncer",
    "auth_entry",
    "blob_uploads",
    "delete_blob",
    "first_layer",
    "index_platforms",
    "layered_image",
    "mounts",
    "of_kind",
    "registry_client",
    "seed",
    "tag_digests",
    "uploaded_digests",
    "write_document",
    "writes",
]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class SyncRun:
    """The outcome of one `flows.cli.main([...])` call.

    Attributes:
        code: the exit code.
        report: the parsed `--report` JSON (None when the run never got that far).
        stdout / stderr: what the CLI printed.
        files: the images/auth/config files written for the run, by name.
    """

    code: int
    report: dict[str, Any] | None
    stdout: str
    stderr: str
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def images(self) -> list[dict[str, Any]]:
        """Every image result of the report."""
        assert self.report is not None, f"no report; stderr:\n{self.stderr}"
        return list(self.report["images"])

    def by_target(self) -> dict[str, dict[str, Any]]:
        """Image results keyed by target reference (each target appears once)."""
        results: dict[str, dict[str, Any]] = {}
        for image in self.images:
            assert image["target"] not in results, f"target twice: {image['target']}"
            results[image["target"]] = image
        return results

    def statuses(self) -> dict[str, str]:
        """`target -> status` of every image."""
        return {target: image["status"] for target, image in self.by_target().items()}

    def total(self, counter: str) -> int:
        """Sum of a numeric field (`blobs_copied`, `blobs_mounted`, ...) over all images."""
        return sum(int(image[counter]) for image in self.images)

    def describe(self) -> str:
        """Everything useful when an assertion fails."""
        return f"exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-4000:]}"


def seed(
    server: RegistryServer, repository: str, tags: Iterable[str | None], image: TestImage
) -> None:
    """Push `image` under every tag (None: by digest only)."""
    with registry_client(server) as client:
        for tag in tags:
            push_image(client, repository, tag, image)


def index_platforms(
    server: RegistryServer, repository: str, reference: str
) -> list[tuple[str, str, str | None] | None]:
    """`(os, architecture, variant)` of each entry of an index; children must exist too."""
    with registry_client(server) as client:
        index = client.get_manifest(repository, reference)
        parsed = index.parsed
        assert isinstance(parsed, ImageIndex), f"{repository}:{reference} is not an index"
        platforms: list[tuple[str, str, str | None] | None] = []
        for entry in parsed.manifests:
            assert client.head_manifest(repository, entry.digest) is not None, entry.digest
            p = entry.platform
            platforms.append((p.os, p.architecture, p.variant) if p else None)
        return platforms


def first_layer(image: TestImage) -> str:
    """The digest of the first layer of a single-platform image."""
    parsed = image.top.parsed
    assert isinstance(parsed, ImageManifest)
    return parsed.layers[0].digest


def delete_blob(server: RegistryServer, repository: str, digest: str) -> None:
    """`DELETE /v2/<repo>/blobs/<digest>` (the test registries enable deletes)."""
    response = httpx.delete(f"{server.url}/v2/{repository}/blobs/{digest}", timeout=10)
    assert response.status_code == 202, response.text


class RequestMark:
    """Remembers how long a registry's access log is, to read what came after."""

    def __init__(self, server: RegistryServer):
        self.server = server
        self.start = len(server.requests())

    def since(self) -> list[LoggedRequest]:
        """Requests served after the mark."""
        return self.server.requests()[self.start :]


def writes(requests: Iterable[LoggedRequest]) -> list[LoggedRequest]:
    """The requests that could change a registry (POST/PUT/PATCH/DELETE)."""
    return [r for r in requests if r.method in WRITE_METHODS]


def of_kind(requests: Iterable[LoggedRequest], method: str, kind: str) -> list[LoggedRequest]:
    """Requests with this method on this endpoint kind (`manifest`, `blob`, `upload`, ...)."""
    return [r for r in requests if r.method == method and classify_path(r.path) == kind]


def blob_uploads(requests: Iterable[LoggedRequest]) -> list[LoggedRequest]:
    """Completed blob uploads: the `PUT .../blobs/uploads/...?digest=` of each."""
    return [r for r in of_kind(requests, "PUT", "upload") if "digest=" in r.path]


def uploaded_digests(requests: Iterable[LoggedRequest]) -> list[str]:
    """Digests of the completed blob uploads, in log order."""
    return [parse_qs(urlsplit(r.path).query)["digest"][0] for r in blob_uploads(requests)]


def mounts(requests: Iterable[LoggedRequest]) -> list[LoggedRequest]:
    """Successful cross-repository mounts (`POST ...?mount=` answered 201)."""
    return [
        r for r in of_kind(requests, "POST", "upload") if "mount=" in r.path and r.status == 201
    ]


def layered_image(layers: Sequence[bytes], seed_value: int) -> TestImage:
    """A Docker schema2 image over exactly these layers (to share layers between images)."""
    rng = random.Random(seed_value)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"seed": str(rng.getrandbits(64))}},
            "rootfs": {"type": "layers", "diff_ids": [compute_digest(layer) for layer in layers]},
        },
        sort_keys=True,
    ).encode()

    def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "size": len(data), "digest": compute_digest(data)}

    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_V2,
        "config": descriptor(mt.DOCKER_CONFIG, config),
        "layers": [descriptor(mt.DOCKER_LAYER, layer) for layer in layers],
    }
    top = RawManifest(mt.DOCKER_MANIFEST_V2, json.dumps(doc, indent=3).encode())
    blobs = {compute_digest(blob): blob for blob in (config, *layers)}
    return TestImage(blobs=blobs, manifests=[top], top=top, platforms=[("linux", "amd64", None)])


class Syncer:
    """Writes the files of a run into `tmp_path` and runs `flows.cli.main` in-process.

    The auth file lists every registry in `registries` (plain HTTP ones as
    `insecure`, with credentials where the registry has them) unless a test
    passes its own.
    """

    def __init__(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], *servers: RegistryServer
    ):
        self.tmp_path = tmp_path
        self.capsys = capsys
        self.registries: list[RegistryServer] = list(servers)
        self.runs = 0

    def file(self, name: str, data: Any) -> Path:
        """Write a YAML/JSON document (by suffix) into the test's directory."""
        return write_document(self.tmp_path / name, data)

    def default_auth(self) -> dict[str, Any]:
        """Auth entries for every known registry."""
        return {server.host: auth_entry(server) for server in self.registries}

    def run(
        self,
        images: dict[str, Any] | str | None,
        *flags: str,
        auth: dict[str, Any] | None = None,
    ) -> SyncRun:
        """Run the CLI with an images file (a mapping, or raw text; None: only `flags`).

        Returns:
            Exit code, parsed `--report` and the captured output.
        """
        from flows.cli import main

        self.runs += 1
        n = self.runs
        files: dict[str, Path] = {}
        args: list[str] = []
        if images is not None:
            files["images"] = self.file(f"images-{n}.yaml", images)
            files["auth"] = self.file(
                f"auth-{n}.yaml", self.default_auth() if auth is None else auth
            )
            args += ["--images", str(files["images"]), "--auth", str(files["auth"])]
        report = self.tmp_path / f"report-{n}.json"
        self.capsys.readouterr()
        code = main([*args, "--report", str(report), *flags])
        captured = self.capsys.readouterr()
        parsed = json.loads(report.read_text()) if report.exists() else None
        return SyncRun(code, parsed, captured.out, captured.err, files)
