"""Manifests and indexes as raw bytes plus a parsed view.

A syncer must never re-serialise what it copies: the digest of a manifest is
the hash of its exact bytes, and signatures and pins reference that digest.
So `RawManifest` keeps the bytes and the parsed models are read-only views
used to find what the manifest references. Only a platform filter builds new
index bytes (see `syncer_core.platform`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syncer_core import mediatypes as mt
from syncer_core.digest import compute_digest, is_digest, parse_digest
from syncer_core.errors import ManifestError
from syncer_core.schema1 import signed_payload

__all__ = [
    "MAX_MANIFEST_BYTES",
    "Descriptor",
    "ImageIndex",
    "ImageManifest",
    "ParsedManifest",
    "Platform",
    "RawManifest",
    "Schema1Manifest",
    "detect_media_type",
    "parse_manifest",
]

#: Registries must serve manifests of at least 4 MiB; we refuse larger ones.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Platform(_Model):
    """The platform of an index entry (OCI image-index `platform`)."""

    architecture: str = ""
    os: str = ""
    os_version: str | None = Field(default=None, alias="os.version")
    os_features: list[str] | None = Field(default=None, alias="os.features")
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


class Descriptor(_Model):
    """A content descriptor: what a manifest points at."""

    media_type: str = Field(default="", alias="mediaType")
    digest: str
    size: int = Field(ge=0)
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")

    def model_post_init(self, __context: Any) -> None:
        """Reject malformed digests up front, so no request is built from them."""
        if not is_digest(self.digest):
            raise ValueError(f"invalid digest {self.digest!r}")

    @property
    def is_foreign(self) -> bool:
        """Non-distributable layers (with `urls`) are not copied between registries."""
        return self.media_type in mt.NON_DISTRIBUTABLE_LAYERS or bool(self.urls)


class ImageManifest(_Model):
    """Docker schema2 / OCI image manifest, or an OCI artifact manifest."""

    schema_version: int = Field(default=2, alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    config: Descriptor | None = None
    layers: list[Descriptor] = Field(default_factory=list)
    blobs: list[Descriptor] = Field(default_factory=list)  # OCI artifact manifest (rc)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    def blob_descriptors(self) -> list[Descriptor]:
        """Config first, then layers: everything that must exist before the push."""
        found = [self.config] if self.config is not None else []
        return [*found, *self.layers, *self.blobs]


class ImageIndex(_Model):
    """Docker manifest list / OCI image index."""

    schema_version: int = Field(default=2, alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    manifests: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class _FsLayer(_Model):
    blob_sum: str = Field(alias="blobSum")

    def model_post_init(self, __context: Any) -> None:
        """Reject malformed digests while parsing, as `Descriptor` does."""
        if not is_digest(self.blob_sum):
            raise ValueError(f"invalid digest {self.blob_sum!r}")


class Schema1Manifest(_Model):
    """Docker schema1 (deprecated): copied as-is, its layers are `fsLayers`."""

    schema_version: int = Field(alias="schemaVersion")
    name: str = ""
    tag: str = ""
    architecture: str = ""
    fs_layers: list[_FsLayer] = Field(alias="fsLayers")

    def blob_descriptors(self) -> list[Descriptor]:
        """Unique layer digests, sizes unknown (schema1 records none)."""
        seen: dict[str, Descriptor] = {}
        for layer in self.fs_layers:
            seen.setdefault(layer.blob_sum, Descriptor(digest=layer.blob_sum, size=0))
        return list(seen.values())


ParsedManifest = ImageManifest | ImageIndex | Schema1Manifest


def detect_media_type(data: bytes | dict[str, Any], content_type: str | None = None) -> str:
    """Work out a manifest's media type.

    The document's own `mediaType` wins; then a specific `Content-Type`; then
    the document's shape (`manifests` → OCI index, `layers` → OCI manifest,
    `fsLayers` → schema1). Registries that answer with a generic
    `application/json` are thereby still understood.
    """
    doc = data if isinstance(data, dict) else _load_json(data)
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared in mt.MANIFEST_TYPES:
        return declared
    ctype = (content_type or "").split(";", 1)[0].strip()
    if ctype in mt.MANIFEST_TYPES:
        return ctype
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "fsLayers" in doc:
        return mt.DOCKER_SCHEMA1_SIGNED if "signatures" in doc else mt.DOCKER_SCHEMA1
    if "layers" in doc or "config" in doc:
        return mt.OCI_MANIFEST
    if "blobs" in doc:
        return mt.OCI_ARTIFACT_MANIFEST
    raise ManifestError(f"not a manifest: media type {declared or ctype or 'unknown'}")


def _load_json(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest of {len(data)} bytes exceeds {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # deep nesting: `[[[[...` within 4 MiB
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    return doc


def parse_manifest(data: bytes, media_type: str) -> ParsedManifest:
    """Parse manifest bytes of a known media type into a read-only view.

    Raises:
        ManifestError: the bytes are not JSON, or not a manifest of that type.
    """
    doc = _load_json(data)
    try:
        if media_type in mt.INDEX_TYPES:
            return ImageIndex.model_validate(doc)
        if media_type in mt.SCHEMA1_TYPES:
            return Schema1Manifest.model_validate(doc)
        if media_type in mt.IMAGE_MANIFEST_TYPES:
            return ImageManifest.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise ManifestError(f"invalid {media_type} manifest at {where}: {first['msg']}") from None
    raise ManifestError(f"unsupported manifest media type {media_type!r}")


@dataclass(frozen=True)
class RawManifest:
    """Manifest bytes exactly as served, with their media type.

    The digest is always computed from the bytes; `parsed` is built lazily.
    """

    media_type: str
    data: bytes = field(repr=False)

    @cached_property
    def digested_bytes(self) -> bytes:
        """What the digest covers: the exact bytes, or a signed schema1's payload.

        The one place of the digest rule (see `syncer_core.schema1`): a signed
        schema1 manifest is addressed by its payload, without signatures.
        """
        if self.media_type in mt.SCHEMA1_TYPES and (payload := signed_payload(self.data)):
            return payload
        return self.data

    @cached_property
    def digest(self) -> str:
        """sha256 of `digested_bytes` (the exact bytes, unless signed schema1)."""
        return compute_digest(self.digested_bytes)

    def digest_as(self, algorithm: str) -> str:
        """The digest under another algorithm (`sha512` references)."""
        return (
            self.digest if algorithm == "sha256" else compute_digest(self.digested_bytes, algorithm)
        )

    def matches(self, digest: str) -> bool:
        """Whether `digest` (sha256 or sha512) is this manifest's digest.

        Raises:
            ValueError: `digest` is not a supported, well-formed digest.
        """
        algorithm, _ = parse_digest(digest)
        return self.digest_as(algorithm) == digest

    @property
    def size(self) -> int:
        """Length of the bytes."""
        return len(self.data)

    @cached_property
    def parsed(self) -> ParsedManifest:
        """The parsed view (raises `ManifestError` on bad content)."""
        return parse_manifest(self.data, self.media_type)

    @property
    def is_index(self) -> bool:
        """True for a Docker manifest list or OCI index."""
        return self.media_type in mt.INDEX_TYPES

    @classmethod
    def from_document(cls, doc: dict[str, Any], media_type: str | None = None) -> RawManifest:
        """Serialise a new document (tests, and index rewrites after filtering).

        Compact, keys in the document's order, non-ASCII text kept as UTF-8
        (annotations are copied as they were, not escaped).
        """
        data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(media_type or detect_media_type(doc), data)
