"""Deterministic benchmark datasets, seeded into a registry with our own client.

Every byte derives from a seed, so two benchmark runs (and two machines)
move identical content. Small layers are built in memory; large layers
(512 MiB, 2 GiB) are streamed twice from a generator: once to compute the
digest, once to push, so the seeding process never holds a layer in memory.

Layers are real gzip streams (random bytes in *stored*, i.e. uncompressed,
deflate blocks: valid gzip at memcpy speed). This matters: skopeo gzips a
layer it detects as uncompressed, which rewrites the blobs and the manifest
(different digests) and spends its time compressing instead of copying.

Datasets (sizes from `DatasetSizes`):

- **S**: `repos` repositories `bench-sNN`, `tags` tags each, every image =
  one base layer shared by all images + `layers - 1` unique layers + config;
- **delta**: `delta` more tags `deltaK` spread round-robin over the S
  repositories (same shape as S images), pushed before a delta run and
  deleted after it;
- **L**: `bench-l512` / `bench-l2g`, one image with one large layer each;
- **scale**: `bench-scale`, one small manifest pushed once by digest, then
  PUT under `scale_tags` tags.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from syncer_core import mediatypes as mt
from syncer_core.digest import compute_digest
from syncer_core.manifest import RawManifest
from syncer_core.registry import RegistryAccess, RegistryClient

__all__ = [
    "DatasetSizes",
    "LargeImage",
    "SeededImage",
    "delete_images",
    "delta_items",
    "large_chunks",
    "large_layer_digest",
    "registry_client",
    "scale_manifest",
    "scale_tags",
    "seed_delta",
    "seed_large",
    "seed_scale",
    "seed_small_set",
]

MiB = 1024 * 1024
_STREAM_CHUNK = MiB
_CREATED = "2024-01-01T00:00:00Z"
_PUSH_WORKERS = 8


@dataclass(frozen=True)
class DatasetSizes:
    """Shape of every dataset; `full()` is the published benchmark, `quick()` the smoke test."""

    repos: int
    tags: int
    layers: int
    layer_size: int
    delta: int
    l512: int
    l2g: int
    scale_tags: int
    many_rules: int

    @classmethod
    def full(cls) -> DatasetSizes:
        """S 20x3x4x2 MiB, delta 5, L 512 MiB and 2 GiB, scale 5,000 tags, 200 rules."""
        return cls(20, 3, 4, 2 * MiB, 5, 512 * MiB, 2048 * MiB, 5000, 200)

    @classmethod
    def quick(cls) -> DatasetSizes:
        """Tiny: 2 repos x 2 tags x 4 layers of 256 KiB, L 16/32 MiB, 200 scale tags, 4 rules."""
        return cls(2, 2, 4, 256 * 1024, 2, 16 * MiB, 32 * MiB, 200, 4)

    def s_repos(self) -> list[str]:
        """Repository names of the S dataset."""
        return [f"bench-s{i:02d}" for i in range(self.repos)]

    def rule_repos(self) -> list[str]:
        """Repository names of the many-rules dataset (one tiny image each)."""
        return [f"bench-r{i:03d}" for i in range(self.many_rules)]


@dataclass
class SeededImage:
    """One pushed image: where, and its manifest digest."""

    repository: str
    tag: str
    digest: str


@dataclass
class LargeImage:
    """A one-layer image: the layer's digest and size (for the curl pipe)."""

    repository: str
    tag: str
    digest: str
    layer_digest: str
    layer_size: int


def registry_client(host: str) -> RegistryClient:
    """A client for a plain-HTTP benchmark registry (`127.0.0.1:PORT`)."""
    return RegistryClient(host, access=RegistryAccess(insecure=True))


def _config(seed: int, diff_ids: Sequence[str]) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": _CREATED,
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Labels": {"bench-seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": _CREATED, "created_by": "image-syncer bench"} for _ in diff_ids],
    }
    return json.dumps(doc, sort_keys=True).encode()


def _manifest(config: bytes, layers: Sequence[tuple[str, int]]) -> RawManifest:
    """A Docker schema2 manifest, 3-space indented like docker's own output."""
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_V2,
        "config": {
            "mediaType": mt.DOCKER_CONFIG,
            "size": len(config),
            "digest": compute_digest(config),
        },
        "layers": [
            {"mediaType": mt.DOCKER_LAYER, "size": size, "digest": digest}
            for digest, size in layers
        ],
    }
    return RawManifest(mt.DOCKER_MANIFEST_V2, json.dumps(doc, indent=3).encode())


def _gzip_stored(raw: bytes) -> bytes:
    """`raw` as a gzip stream of stored (uncompressed) blocks."""
    compressor = zlib.compressobj(0, zlib.DEFLATED, 31)
    return compressor.compress(raw) + compressor.flush()


def _small_image(seed: int, base: bytes, sizes: DatasetSizes) -> tuple[list[bytes], RawManifest]:
    """Blobs (config, base, unique layers) and manifest of one S-shaped image."""
    rng = random.Random(seed)
    unique = (_gzip_stored(rng.randbytes(sizes.layer_size)) for _ in range(sizes.layers - 1))
    layers = [base, *unique]
    digests = [compute_digest(layer) for layer in layers]
    config = _config(seed, digests)
    manifest = _manifest(
        config, [(d, len(layer)) for d, layer in zip(digests, layers, strict=True)]
    )
    return [config, *layers], manifest


def _push_small(
    client: RegistryClient, repository: str, tag: str, seed: int, base: bytes, sizes: DatasetSizes
) -> SeededImage:
    blobs, manifest = _small_image(seed, base, sizes)
    for blob in blobs:
        client.push_blob_bytes(repository, blob)
    digest = client.put_manifest(repository, tag, manifest)
    return SeededImage(repository, tag, digest)


def _base_layer(sizes: DatasetSizes) -> bytes:
    return _gzip_stored(random.Random(1).randbytes(sizes.layer_size))


def _push_all(
    client: RegistryClient, items: Sequence[tuple[str, str, int]], sizes: DatasetSizes
) -> list[SeededImage]:
    """Push `(repository, tag, seed)` images in parallel."""
    base = _base_layer(sizes)
    with ThreadPoolExecutor(_PUSH_WORKERS) as pool:
        futures = [pool.submit(_push_small, client, r, t, s, base, sizes) for r, t, s in items]
        return [f.result() for f in futures]


def seed_small_set(client: RegistryClient, sizes: DatasetSizes) -> list[SeededImage]:
    """Push the S dataset: `repos x tags` images sharing one base layer."""
    items = [
        (repo, f"t{t}", 1000 + r * 100 + t)
        for r, repo in enumerate(sizes.s_repos())
        for t in range(sizes.tags)
    ]
    return _push_all(client, items, sizes)


def seed_many_rules(client: RegistryClient, sizes: DatasetSizes) -> list[SeededImage]:
    """One tag per many-rules repository: a config and one shared 4 KiB layer.

    The images are tiny on purpose: the case measures what each rule costs
    when there is nothing to copy, not bytes.
    """
    tiny = replace(sizes, layers=1, layer_size=4096)
    items = [(repo, "v1", 500_000 + i) for i, repo in enumerate(sizes.rule_repos())]
    return _push_all(client, items, tiny)


def delta_items(sizes: DatasetSizes) -> list[tuple[str, str, int]]:
    """`(repository, tag, seed)` of the delta images, round-robin over the S repositories."""
    repos = sizes.s_repos()
    return [(repos[k % len(repos)], f"delta{k}", 900_000 + k) for k in range(sizes.delta)]


def seed_delta(client: RegistryClient, sizes: DatasetSizes) -> list[SeededImage]:
    """Push the delta tags (new images in existing S repositories)."""
    return _push_all(client, delta_items(sizes), sizes)


def delete_images(client: RegistryClient, images: Sequence[SeededImage]) -> None:
    """Delete manifests by digest; distribution also removes the tags pointing at them."""
    for image in images:
        client.send(
            "DELETE",
            f"/v2/{image.repository}/manifests/{image.digest}",
            what=f"DELETE manifest {image.repository}@{image.digest}",
            ok=(202, 404),
        ).close()


def _raw_chunks(seed: int, size: int) -> Iterator[bytes]:
    """`size` deterministic, incompressible-looking bytes, 1 MiB at a time.

    One random block per seed; each chunk is that block behind a unique
    16-byte (seed, index) prefix, so no two chunks are equal and generation
    costs a memcpy rather than a PRNG call per byte.
    """
    block = random.Random(seed).randbytes(_STREAM_CHUNK - 16)
    sent, index = 0, 0
    while sent < size:
        chunk = struct.pack(">QQ", seed, index) + block
        take = min(len(chunk), size - sent)
        yield chunk if take == len(chunk) else chunk[:take]
        sent += take
        index += 1


def large_chunks(seed: int, size: int) -> Iterator[bytes]:
    """The layer blob: `size` raw bytes as a streamed gzip of stored blocks."""
    compressor = zlib.compressobj(0, zlib.DEFLATED, 31)
    for raw in _raw_chunks(seed, size):
        out = compressor.compress(raw)
        if out:
            yield out
    yield compressor.flush()


def large_layer_digest(seed: int, size: int) -> tuple[str, int]:
    """First streaming pass: digest and byte size of `large_chunks(seed, size)`."""
    h = hashlib.sha256()
    total = 0
    for chunk in large_chunks(seed, size):
        h.update(chunk)
        total += len(chunk)
    return "sha256:" + h.hexdigest(), total


def seed_large(client: RegistryClient, repository: str, size: int, seed: int) -> LargeImage:
    """Push a one-layer image whose layer is streamed (never held in memory)."""
    digest, blob_size = large_layer_digest(seed, size)
    if client.head_blob(repository, digest) is None:
        client.push_blob(repository, digest, large_chunks(seed, size), size=blob_size)
    config = _config(seed, [digest])
    client.push_blob_bytes(repository, config)
    manifest = _manifest(config, [(digest, blob_size)])
    pushed = client.put_manifest(repository, "latest", manifest)
    return LargeImage(repository, "latest", pushed, digest, blob_size)


def scale_manifest(client: RegistryClient, repository: str) -> RawManifest:
    """Push the blobs of the small scale image; return its manifest (not yet pushed)."""
    layer = _gzip_stored(random.Random(7).randbytes(1024))
    config = _config(7, [compute_digest(layer)])
    client.push_blob_bytes(repository, layer)
    client.push_blob_bytes(repository, config)
    return _manifest(config, [(compute_digest(layer), len(layer))])


def scale_tags(count: int) -> list[str]:
    """Tag names of the scale repository."""
    return [f"s{i:05d}" for i in range(count)]


def seed_scale(client: RegistryClient, repository: str, count: int) -> str:
    """Push one small manifest by digest, then PUT it under `count` tags; returns its digest."""
    manifest = scale_manifest(client, repository)
    digest = client.put_manifest(repository, manifest.digest, manifest)
    with ThreadPoolExecutor(_PUSH_WORKERS) as pool:
        list(
            pool.map(lambda tag: client.put_manifest(repository, tag, manifest), scale_tags(count))
        )
    return digest
