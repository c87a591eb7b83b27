"""Deterministic synthetic images: blobs, configs, manifests and indexes from a seed.

Layers are random bytes (registries never look inside them). Manifests are
serialised with docker's 3-space indentation rather than compact JSON, so a
syncer that re-serialises instead of copying bytes changes the digest and
fails the tests that compare digests.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from syncer_core import mediatypes as mt
from syncer_core.digest import compute_digest
from syncer_core.manifest import RawManifest

__all__ = [
    "DEFAULT_PLATFORMS",
    "Attestation",
    "ImageFormat",
    "PlatformSpec",
    "PushClient",
    "TestImage",
    "build_image",
    "build_index",
    "push_image",
]

ImageFormat = Literal["docker", "oci"]
#: `artifact`: OCI manifest with `artifactType`, index entry without `platform`;
#: `unknown`: buildx style, index entry with platform `unknown/unknown`.
Attestation = Literal["artifact", "unknown"]

#: `(os, architecture, variant)`
PlatformSpec = tuple[str, str, str | None]
DEFAULT_PLATFORMS: tuple[PlatformSpec, ...] = (
    ("linux", "amd64", None),
    ("linux", "arm64", None),
    ("linux", "arm", "v7"),
)
IN_TOTO = "application/vnd.in-toto+json"
_CREATED = "2024-01-01T00:00:00Z"


@dataclass(frozen=True)
class TestImage:
    """A built image: everything needed to push it, and what to expect after a copy.

    Attributes:
        blobs: digest → bytes of every config and layer (and attestation blobs).
        manifests: every manifest in push order, children first, `top` last.
        top: the manifest to tag (the image manifest itself, or the index).
    """

    __test__ = False  # not a pytest test class

    blobs: dict[str, bytes]
    manifests: list[RawManifest]
    top: RawManifest
    platforms: list[PlatformSpec] = field(default_factory=list)

    @property
    def digest(self) -> str:
        """Digest of the top manifest."""
        return self.top.digest

    @property
    def children(self) -> list[RawManifest]:
        """Every manifest except the top one."""
        return self.manifests[:-1]

    @property
    def blob_bytes(self) -> int:
        """Total size of all blobs."""
        return sum(len(b) for b in self.blobs.values())


def _serialise(doc: dict[str, Any], media_type: str) -> RawManifest:
    return RawManifest(media_type, json.dumps(doc, indent=3).encode())


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(data), "digest": compute_digest(data), **extra}


def _platform(spec: PlatformSpec) -> dict[str, str]:
    os_name, arch, variant = spec
    doc = {"architecture": arch, "os": os_name}
    return {**doc, "variant": variant} if variant else doc


def _config(rng: random.Random, layers: Sequence[bytes], spec: PlatformSpec) -> bytes:
    doc = {
        **_platform(spec),
        "created": _CREATED,
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Labels": {"seed": str(rng.getrandbits(64))}},
        "rootfs": {"type": "layers", "diff_ids": [compute_digest(layer) for layer in layers]},
        "history": [{"created": _CREATED, "created_by": "image-syncer tests"} for _ in layers],
    }
    return json.dumps(doc, sort_keys=True).encode()


def _single(
    rng: random.Random,
    image_format: ImageFormat,
    layer_sizes: Sequence[int],
    spec: PlatformSpec,
    blobs: dict[str, bytes],
) -> RawManifest:
    layers = [rng.randbytes(size) for size in layer_sizes]
    config = _config(rng, layers, spec)
    docker = image_format == "docker"
    media_type = mt.DOCKER_MANIFEST_V2 if docker else mt.OCI_MANIFEST
    layer_type = mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": _descriptor(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, config),
        "layers": [_descriptor(layer_type, layer) for layer in layers],
    }
    for blob in (config, *layers):
        blobs[compute_digest(blob)] = blob
    return _serialise(doc, media_type)


def build_image(
    seed: int,
    *,
    image_format: ImageFormat = "docker",
    layer_sizes: Sequence[int] = (1024, 4096),
    platform: PlatformSpec = DEFAULT_PLATFORMS[0],
) -> TestImage:
    """A single-platform image (Docker schema2 or OCI manifest).

    Args:
        seed: the same seed always yields the same bytes.
        image_format: `docker` (schema2) or `oci`.
        layer_sizes: one random layer blob per size, in bytes.
        platform: `(os, architecture, variant)` recorded in the config.

    Returns:
        The image; `manifests == [top]`.
    """
    blobs: dict[str, bytes] = {}
    top = _single(random.Random(seed), image_format, layer_sizes, platform, blobs)
    return TestImage(blobs=blobs, manifests=[top], top=top, platforms=[platform])


def _attestation(
    rng: random.Random, variant: Attestation, subject: RawManifest, blobs: dict[str, bytes]
) -> tuple[RawManifest, dict[str, Any]]:
    statement = json.dumps(
        {"_type": "https://in-toto.io/Statement/v0.1", "nonce": rng.getrandbits(64)}
    ).encode()
    layer = _descriptor(
        IN_TOTO,
        statement,
        annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
    )
    if variant == "artifact":
        config = b"{}"
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": IN_TOTO,
            "config": _descriptor(mt.OCI_EMPTY, config),
            "layers": [layer],
        }
    else:
        config = _config(rng, [statement], ("unknown", "unknown", None))
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": _descriptor(mt.OCI_CONFIG, config),
            "layers": [layer],
        }
    blobs[compute_digest(config)] = config
    blobs[compute_digest(statement)] = statement
    manifest = _serialise(doc, mt.OCI_MANIFEST)
    entry = _descriptor(
        mt.OCI_MANIFEST,
        manifest.data,
        annotations={
            "vnd.docker.reference.digest": subject.digest,
            "vnd.docker.reference.type": "attestation-manifest",
        },
    )
    if variant == "artifact":
        entry["artifactType"] = IN_TOTO
    else:
        entry["platform"] = {"architecture": "unknown", "os": "unknown"}
    return manifest, entry


def build_index(
    seed: int,
    *,
    image_format: ImageFormat = "oci",
    platforms: Sequence[PlatformSpec] = DEFAULT_PLATFORMS,
    layer_sizes: Sequence[int] = (1024, 4096),
    attestation: Attestation | None = None,
) -> TestImage:
    """A multi-platform image: Docker manifest list or OCI index over per-platform images.

    Args:
        seed: the same seed always yields the same bytes.
        image_format: `docker` (manifest list of schema2) or `oci` (index of OCI manifests).
        platforms: one child image per `(os, architecture, variant)`.
        layer_sizes: random layers of each child.
        attestation: add an attestation manifest for the first child (OCI only).

    Returns:
        The image; children (and the attestation) first, the index last.

    Raises:
        ValueError: an attestation was asked for a Docker manifest list.
    """
    if attestation is not None and image_format != "oci":
        raise ValueError("attestation entries are only built for OCI indexes")
    rng = random.Random(seed)
    blobs: dict[str, bytes] = {}
    children: list[RawManifest] = []
    entries: list[dict[str, Any]] = []
    for spec in platforms:
        child = _single(rng, image_format, layer_sizes, spec, blobs)
        children.append(child)
        entries.append(_descriptor(child.media_type, child.data, platform=_platform(spec)))
    if attestation is not None:
        manifest, entry = _attestation(rng, attestation, children[0], blobs)
        children.append(manifest)
        entries.append(entry)
    media_type = mt.DOCKER_MANIFEST_LIST if image_format == "docker" else mt.OCI_INDEX
    top = _serialise(
        {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, media_type
    )
    return TestImage(blobs=blobs, manifests=[*children, top], top=top, platforms=list(platforms))


class PushClient(Protocol):
    """The part of `RegistryClient` that `push_image` uses."""

    def head_blob(self, repository: str, digest: str) -> int | None: ...

    def push_blob_bytes(self, repository: str, data: bytes) -> str: ...

    def put_manifest(self, repository: str, reference: str, manifest: RawManifest) -> str: ...


def push_image(client: PushClient, repository: str, tag: str | None, image: TestImage) -> str:
    """Push an image with our client: blobs, then children by digest, then the top.

    Args:
        client: a `RegistryClient` for the destination registry.
        repository: e.g. `library/alpine`.
        tag: tag for the top manifest; None pushes it by digest only.
        image: what to push.

    Returns:
        The digest of the top manifest.

    Raises:
        AssertionError: the registry reported a different digest than expected.
    """
    for digest, data in image.blobs.items():
        if client.head_blob(repository, digest) is None:
            pushed = client.push_blob_bytes(repository, data)
            assert pushed == digest, f"blob pushed as {pushed}, expected {digest}"
    for child in image.children:
        client.put_manifest(repository, child.digest, child)
    pushed = client.put_manifest(repository, tag or image.top.digest, image.top)
    assert pushed == image.digest, f"manifest pushed as {pushed}, expected {image.digest}"
    return pushed
