"""Signatures and attestations laid out the way cosign and the referrers tag schema do.

- `cosign_signature`: the `sha256-<hex>.sig` manifest cosign pushes: an OCI
  manifest over a tiny config, one `simplesigning` layer per signature whose
  annotations carry the signature and the bundle;
- `attestation_index`: an OCI index with `artifactType` and a `subject`
  pointing at an image (e.g. one child of a multi-platform index), listing an
  in-toto attestation manifest;
- `referrers_index`: the referrers tag schema's `sha256-<hex>` index listing
  the referrers of a subject, for registries without the referrers API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from syncer_core import mediatypes as mt
from syncer_core.digest import compute_digest
from syncer_core.manifest import RawManifest
from syncer_core.referrertags import fallback_tag
from tests.support.images import TestImage

__all__ = [
    "SIMPLE_SIGNING",
    "Artifact",
    "attestation_index",
    "cosign_signature",
    "push_artifact",
    "referrers_index",
    "sign",
]

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
IN_TOTO = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class Artifact:
    """Manifests (children first) and blobs to push; `top` is the one a tag or digest names."""

    blobs: dict[str, bytes]
    manifests: list[RawManifest]

    @property
    def top(self) -> RawManifest:
        return self.manifests[-1]

    @property
    def digest(self) -> str:
        return self.top.digest


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(data), "digest": compute_digest(data), **extra}


def _manifest(doc: dict[str, Any], media_type: str) -> RawManifest:
    return RawManifest(media_type, json.dumps(doc, indent=3).encode())


def cosign_signature(subject: RawManifest, reference: str, nonce: int = 0) -> Artifact:
    """cosign's signature manifest of `subject` (push it under `sha256-<hex>.sig`)."""
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": subject.digest},
                "type": "cosign container image signature",
            },
            "optional": {"nonce": nonce},
        }
    ).encode()
    config = json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers",
                         "diff_ids": [compute_digest(payload)]}}).encode()  # fmt: skip
    annotations = {
        "dev.cosignproject.cosign/signature": f"MEUCIQ-test-signature-{nonce}",
        "dev.sigstore.cosign/bundle": json.dumps({"SignedEntryTimestamp": f"t{nonce}"}),
    }
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": _descriptor(mt.OCI_CONFIG, config),
        "layers": [_descriptor(SIMPLE_SIGNING, payload, annotations=annotations)],
    }
    blobs = {compute_digest(b): b for b in (payload, config)}
    return Artifact(blobs, [_manifest(doc, mt.OCI_MANIFEST)])


def attestation_index(subject: RawManifest, nonce: int = 0) -> Artifact:
    """An OCI index referring to `subject`, over one in-toto attestation manifest."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "n": nonce}).encode()
    empty = b"{}"
    attestation = _manifest(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": IN_TOTO,
            "config": _descriptor(mt.OCI_EMPTY, empty),
            "layers": [_descriptor(IN_TOTO, statement)],
        },
        mt.OCI_MANIFEST,
    )
    index = _manifest(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "artifactType": IN_TOTO,
            "manifests": [_descriptor(mt.OCI_MANIFEST, attestation.data, artifactType=IN_TOTO)],
            "subject": _descriptor(subject.media_type, subject.data),
        },
        mt.OCI_INDEX,
    )
    blobs = {compute_digest(b): b for b in (statement, empty)}
    return Artifact(blobs, [attestation, index])


def referrers_index(*referrers: Artifact) -> RawManifest:
    """The `sha256-<hex>` index of the referrers tag schema, listing `referrers`."""
    entries = []
    for referrer in referrers:
        entry = _descriptor(referrer.top.media_type, referrer.top.data)
        artifact_type = json.loads(referrer.top.data).get("artifactType")
        if artifact_type:
            entry["artifactType"] = artifact_type
        entries.append(entry)
    return _manifest({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries},
                     mt.OCI_INDEX)  # fmt: skip


def push_artifact(client: Any, repository: str, reference: str | None, artifact: Artifact) -> None:
    """Push blobs, then manifests children first; the top under `reference` (or its digest)."""
    for data in artifact.blobs.values():
        client.push_blob_bytes(repository, data)
    for manifest in artifact.manifests[:-1]:
        client.put_manifest(repository, manifest.digest, manifest)
    client.put_manifest(repository, reference or artifact.digest, artifact.top)


def sign(client: Any, repository: str, image: TestImage | RawManifest, reference: str) -> Artifact:
    """Push cosign's `.sig` for an image; returns the signature artifact."""
    subject = image.top if isinstance(image, TestImage) else image
    signature = cosign_signature(subject, reference)
    push_artifact(client, repository, fallback_tag(subject.digest) + ".sig", signature)
    return signature
