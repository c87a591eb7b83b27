"""Manifest media-type detection, parsing, and digests of the exact bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from syncer_core import mediatypes as mt
from syncer_core.errors import ManifestError
from syncer_core.manifest import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    RawManifest,
    Schema1Manifest,
    detect_media_type,
    parse_manifest,
)


def digest_of(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


CONFIG = digest_of("config")
LAYER1 = digest_of("layer1")
LAYER2 = digest_of("layer2")
CHILD_AMD64 = digest_of("amd64")
CHILD_ARM = digest_of("arm")
CHILD_WIN = digest_of("windows")
ATTESTATION = digest_of("attestation")
SUBJECT = digest_of("subject")

DOCKER_V2: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST_V2,
    "config": {"mediaType": mt.DOCKER_CONFIG, "size": 1469, "digest": CONFIG},
    "layers": [
        {"mediaType": mt.DOCKER_LAYER, "size": 3370706, "digest": LAYER1},
        {"mediaType": mt.DOCKER_LAYER, "size": 120, "digest": LAYER2},
    ],
}

OCI_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": {"mediaType": mt.OCI_CONFIG, "size": 1469, "digest": CONFIG},
    "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "size": 3370706, "digest": LAYER1}],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}

DOCKER_LIST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST_LIST,
    "manifests": [
        {
            "mediaType": mt.DOCKER_MANIFEST_V2,
            "size": 528,
            "digest": CHILD_AMD64,
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": mt.DOCKER_MANIFEST_V2,
            "size": 528,
            "digest": CHILD_ARM,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
    ],
}

OCI_INDEX: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {
            "mediaType": mt.OCI_MANIFEST,
            "size": 1000,
            "digest": CHILD_ARM,
            "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "size": 1000,
            "digest": CHILD_WIN,
            "platform": {
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.5696",
                "os.features": ["win32k"],
            },
        },
        {
            # buildkit attestation: no platform, points at its image via annotations
            "mediaType": mt.OCI_MANIFEST,
            "size": 840,
            "digest": ATTESTATION,
            "annotations": {
                "vnd.docker.reference.digest": CHILD_ARM,
                "vnd.docker.reference.type": "attestation-manifest",
            },
        },
    ],
}

OCI_ARTIFACT: dict[str, Any] = {
    "mediaType": mt.OCI_ARTIFACT_MANIFEST,
    "artifactType": "application/vnd.example.sbom.v1",
    "blobs": [{"mediaType": "application/json", "size": 42, "digest": LAYER1}],
    "subject": {"mediaType": mt.OCI_MANIFEST, "size": 1000, "digest": SUBJECT},
    "annotations": {"org.example.kind": "sbom"},
}

# OCI 1.1 artifacts are image manifests with artifactType, an empty config and a subject.
OCI_11_ARTIFACT: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
    "config": {
        "mediaType": mt.OCI_EMPTY,
        "size": 2,
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    },
    "layers": [
        {
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": 3,
            "digest": LAYER2,
        }
    ],
    "subject": {"mediaType": mt.OCI_MANIFEST, "size": 1000, "digest": SUBJECT},
}

SCHEMA1: dict[str, Any] = {
    "schemaVersion": 1,
    "name": "library/hello",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": LAYER1}, {"blobSum": LAYER2}, {"blobSum": LAYER1}],
    "history": [{"v1Compatibility": "{}"}] * 3,
}

SCHEMA1_SIGNED: dict[str, Any] = {
    **SCHEMA1,
    "signatures": [
        {
            "header": {"jwk": {"crv": "P-256", "kty": "EC"}, "alg": "ES256"},
            "signature": "abc",
            "protected": "def",
        }
    ],
}


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("doc", "content_type", "expected"),
    [
        pytest.param(DOCKER_V2, None, mt.DOCKER_MANIFEST_V2, id="docker-v2"),
        pytest.param(OCI_MANIFEST, None, mt.OCI_MANIFEST, id="oci-manifest"),
        pytest.param(DOCKER_LIST, None, mt.DOCKER_MANIFEST_LIST, id="docker-list"),
        pytest.param(OCI_INDEX, None, mt.OCI_INDEX, id="oci-index"),
        pytest.param(OCI_ARTIFACT, None, mt.OCI_ARTIFACT_MANIFEST, id="oci-artifact"),
        pytest.param(OCI_11_ARTIFACT, None, mt.OCI_MANIFEST, id="oci-1.1-artifact"),
        pytest.param(SCHEMA1, None, mt.DOCKER_SCHEMA1, id="schema1-unsigned"),
        pytest.param(SCHEMA1_SIGNED, None, mt.DOCKER_SCHEMA1_SIGNED, id="schema1-signed"),
        # The document's own mediaType wins over the header.
        pytest.param(DOCKER_V2, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_V2, id="declared-beats-header"),
        # Without a mediaType field: a specific Content-Type, then the shape.
        pytest.param(
            {k: v for k, v in OCI_MANIFEST.items() if k != "mediaType"},
            f"{mt.DOCKER_MANIFEST_V2}; charset=utf-8",
            mt.DOCKER_MANIFEST_V2,
            id="header-with-params",
        ),
        pytest.param(
            {k: v for k, v in OCI_MANIFEST.items() if k != "mediaType"},
            "application/json",
            mt.OCI_MANIFEST,
            id="generic-json-header-shape-manifest",
        ),
        pytest.param(
            {k: v for k, v in OCI_INDEX.items() if k != "mediaType"},
            None,
            mt.OCI_INDEX,
            id="shape-index",
        ),
        pytest.param(
            {"schemaVersion": 2, "config": OCI_MANIFEST["config"]},
            None,
            mt.OCI_MANIFEST,
            id="shape-config-only",
        ),
        pytest.param({"blobs": []}, None, mt.OCI_ARTIFACT_MANIFEST, id="shape-blobs"),
        pytest.param(
            {**OCI_MANIFEST, "mediaType": "application/vnd.example+json"},
            None,
            mt.OCI_MANIFEST,
            id="unknown-declared-falls-back-to-shape",
        ),
    ],
)
def test_detect_media_type(doc: dict[str, Any], content_type: str | None, expected: str) -> None:
    assert detect_media_type(encode(doc), content_type) == expected
    assert detect_media_type(doc, content_type) == expected


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        pytest.param(b'{"schemaVersion": 2}', None, id="no-shape"),
        pytest.param(b"{}", "application/json", id="empty-object"),
        pytest.param(b'{"mediaType": 42}', None, id="non-string-media-type"),
        pytest.param(b'{"mediaType": "text/plain"}', "text/plain", id="foreign-types"),
    ],
)
def test_detect_media_type_unknown(data: bytes, content_type: str | None) -> None:
    with pytest.raises(ManifestError, match="not a manifest"):
        detect_media_type(data, content_type)


def test_parse_docker_v2() -> None:
    manifest = parse_manifest(encode(DOCKER_V2), mt.DOCKER_MANIFEST_V2)
    assert isinstance(manifest, ImageManifest)
    assert manifest.media_type == mt.DOCKER_MANIFEST_V2
    assert manifest.config is not None
    assert manifest.config.digest == CONFIG
    assert [d.digest for d in manifest.blob_descriptors()] == [CONFIG, LAYER1, LAYER2]
    assert [d.size for d in manifest.layers] == [3370706, 120]


def test_parse_oci_manifest() -> None:
    manifest = parse_manifest(encode(OCI_MANIFEST), mt.OCI_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    assert manifest.layers[0].media_type == mt.OCI_LAYER_GZIP
    assert manifest.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    assert manifest.subject is None


def test_parse_docker_manifest_list() -> None:
    index = parse_manifest(encode(DOCKER_LIST), mt.DOCKER_MANIFEST_LIST)
    assert isinstance(index, ImageIndex)
    platforms = [m.platform for m in index.manifests]
    assert [str(p) for p in platforms] == ["linux/amd64", "linux/arm64/v8"]


def test_parse_oci_index_with_attestation_and_os_version() -> None:
    index = parse_manifest(encode(OCI_INDEX), mt.OCI_INDEX)
    assert isinstance(index, ImageIndex)
    arm, windows, attestation = index.manifests
    assert arm.platform == Platform(architecture="arm", os="linux", variant="v7")
    assert str(arm.platform) == "linux/arm/v7"
    assert windows.platform is not None
    assert windows.platform.os_version == "10.0.17763.5696"
    assert windows.platform.os_features == ["win32k"]
    assert windows.platform.variant is None
    assert str(windows.platform) == "windows/amd64"
    assert attestation.platform is None
    assert attestation.annotations is not None
    assert attestation.annotations["vnd.docker.reference.type"] == "attestation-manifest"


def test_parse_oci_artifact_manifest() -> None:
    manifest = parse_manifest(encode(OCI_ARTIFACT), mt.OCI_ARTIFACT_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    assert manifest.artifact_type == "application/vnd.example.sbom.v1"
    assert manifest.config is None
    assert manifest.subject is not None
    assert manifest.subject.digest == SUBJECT
    assert [d.digest for d in manifest.blob_descriptors()] == [LAYER1]


def test_parse_oci_11_artifact() -> None:
    manifest = parse_manifest(encode(OCI_11_ARTIFACT), mt.OCI_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    assert manifest.artifact_type == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert manifest.config is not None
    assert manifest.config.media_type == mt.OCI_EMPTY
    assert manifest.subject is not None
    assert manifest.subject.digest == SUBJECT


@pytest.mark.parametrize(
    ("doc", "media_type"),
    [
        pytest.param(SCHEMA1, mt.DOCKER_SCHEMA1, id="unsigned"),
        pytest.param(SCHEMA1_SIGNED, mt.DOCKER_SCHEMA1_SIGNED, id="signed"),
    ],
)
def test_parse_schema1(doc: dict[str, Any], media_type: str) -> None:
    manifest = parse_manifest(encode(doc), media_type)
    assert isinstance(manifest, Schema1Manifest)
    assert manifest.name == "library/hello"
    # Unique layers, in order, sizes unknown.
    assert [(d.digest, d.size) for d in manifest.blob_descriptors()] == [(LAYER1, 0), (LAYER2, 0)]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="text"),
        pytest.param(b'{"schemaVersion": 2,', id="truncated"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param(b"\xc3\x28", id="invalid-utf8"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"[{}]", id="array-of-object"),
        pytest.param(b"null", id="null"),
        pytest.param(b"42", id="number"),
        pytest.param(b'"manifest"', id="string"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested-array"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="deeply-nested-object"),
        pytest.param(b"1" * 5000, id="huge-integer"),
    ],
)
def test_garbage_bytes_raise_manifest_error(data: bytes) -> None:
    with pytest.raises(ManifestError):
        detect_media_type(data)
    for media_type in sorted(mt.MANIFEST_TYPES):
        with pytest.raises(ManifestError):
            parse_manifest(data, media_type)


def test_oversized_manifest_rejected() -> None:
    data = b'{"layers": [], "pad": "' + b" " * MAX_MANIFEST_BYTES + b'"}'
    with pytest.raises(ManifestError, match="exceeds"):
        parse_manifest(data, mt.OCI_MANIFEST)
    with pytest.raises(ManifestError, match="exceeds"):
        detect_media_type(data)


def with_layer(**fields: Any) -> dict[str, Any]:
    return {**OCI_MANIFEST, "layers": [{**OCI_MANIFEST["layers"][0], **fields}]}


@pytest.mark.parametrize(
    ("doc", "media_type", "where"),
    [
        pytest.param(
            {**OCI_MANIFEST, "layers": "not-a-list"},
            mt.OCI_MANIFEST,
            "layers",
            id="layers-not-list",
        ),
        pytest.param(
            {**OCI_MANIFEST, "layers": [42]}, mt.OCI_MANIFEST, "layers.0", id="layer-not-object"
        ),
        pytest.param(with_layer(size="big"), mt.OCI_MANIFEST, "layers.0.size", id="size-not-int"),
        pytest.param(with_layer(size=-1), mt.OCI_MANIFEST, "layers.0.size", id="size-negative"),
        pytest.param(
            with_layer(digest=123), mt.OCI_MANIFEST, "layers.0.digest", id="digest-not-string"
        ),
        pytest.param(
            with_layer(digest="sha256:abc"), mt.OCI_MANIFEST, "layers.0", id="digest-malformed"
        ),
        pytest.param(with_layer(digest=None), mt.OCI_MANIFEST, "layers.0.digest", id="digest-null"),
        pytest.param(
            {**OCI_MANIFEST, "config": "x"}, mt.OCI_MANIFEST, "config", id="config-not-object"
        ),
        pytest.param(
            {**OCI_MANIFEST, "schemaVersion": "two"},
            mt.OCI_MANIFEST,
            "schemaVersion",
            id="schema-version-text",
        ),
        pytest.param(
            {**OCI_MANIFEST, "annotations": {"a": 1}},
            mt.OCI_MANIFEST,
            "annotations.a",
            id="annotation-not-string",
        ),
        pytest.param(
            {**OCI_ARTIFACT, "subject": []},
            mt.OCI_ARTIFACT_MANIFEST,
            "subject",
            id="subject-not-object",
        ),
        pytest.param(
            {**OCI_INDEX, "manifests": {}}, mt.OCI_INDEX, "manifests", id="manifests-not-list"
        ),
        pytest.param({"schemaVersion": 2}, mt.OCI_INDEX, "manifests", id="index-without-manifests"),
        pytest.param(
            {**DOCKER_LIST, "manifests": [{**DOCKER_LIST["manifests"][0], "platform": "linux"}]},
            mt.DOCKER_MANIFEST_LIST,
            "manifests.0.platform",
            id="platform-not-object",
        ),
        pytest.param(
            {**SCHEMA1, "fsLayers": None}, mt.DOCKER_SCHEMA1, "fsLayers", id="schema1-fslayers-null"
        ),
        pytest.param(
            {k: v for k, v in SCHEMA1.items() if k != "fsLayers"},
            mt.DOCKER_SCHEMA1,
            "fsLayers",
            id="schema1-no-fslayers",
        ),
        pytest.param(
            {**SCHEMA1, "fsLayers": [{"blobSum": 1}]},
            mt.DOCKER_SCHEMA1,
            "fsLayers.0.blobSum",
            id="schema1-blobsum-int",
        ),
    ],
)
def test_wrong_types_raise_manifest_error(doc: dict[str, Any], media_type: str, where: str) -> None:
    with pytest.raises(ManifestError, match=f"at {where}:"):
        parse_manifest(encode(doc), media_type)


def test_unsupported_media_type() -> None:
    with pytest.raises(ManifestError, match="unsupported manifest media type"):
        parse_manifest(encode(OCI_MANIFEST), "application/vnd.oci.image.config.v1+json")


def test_manifest_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        parse_manifest(b"nope", mt.OCI_MANIFEST)


NON_CANONICAL = (
    b'{\n   "layers" : [ {"size":3370706,  "digest":"' + LAYER1.encode() + b'",'
    b' "mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
    b' "x-unknown": [1, 2.50, null]} ],\n'
    b'\t"x-vendor": {"nested": {"deep": true}},\n'
    b'  "config":{"digest":"' + CONFIG.encode() + b'","size":1469,'
    b'"mediaType":"application/vnd.oci.image.config.v1+json"},'
    b'"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    b'"schemaVersion":2 }\r\n\n'
)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode(DOCKER_V2), id="json-dumps"),
        pytest.param(json.dumps(OCI_MANIFEST, indent=3).encode(), id="indented"),
        pytest.param(
            json.dumps(OCI_INDEX, sort_keys=True, separators=(",", ":")).encode(),
            id="sorted-compact",
        ),
        pytest.param(NON_CANONICAL, id="whitespace-order-unknown-fields"),
        pytest.param(
            json.dumps(OCI_MANIFEST, ensure_ascii=False).encode() + b" ", id="trailing-space"
        ),
    ],
)
def test_raw_manifest_digest_is_sha256_of_exact_bytes(data: bytes) -> None:
    raw = RawManifest(detect_media_type(data), data)
    assert raw.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert raw.size == len(data)
    raw.parsed  # noqa: B018 - parsing must not touch the bytes
    assert raw.data is data
    assert raw.digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_non_canonical_manifest_parses_and_keeps_unknown_fields() -> None:
    raw = RawManifest(detect_media_type(NON_CANONICAL), NON_CANONICAL)
    assert raw.media_type == mt.OCI_MANIFEST
    manifest = raw.parsed
    assert isinstance(manifest, ImageManifest)
    assert [d.digest for d in manifest.blob_descriptors()] == [CONFIG, LAYER1]
    assert manifest.model_extra == {"x-vendor": {"nested": {"deep": True}}}
    assert manifest.layers[0].model_extra == {"x-unknown": [1, 2.5, None]}
    # A re-serialisation would have another digest; the raw bytes keep theirs.
    canonical = json.dumps(json.loads(NON_CANONICAL), separators=(",", ":")).encode()
    assert raw.digest != RawManifest(mt.OCI_MANIFEST, canonical).digest


def test_raw_manifest_digest_available_for_bad_content() -> None:
    raw = RawManifest(mt.OCI_MANIFEST, b"not json")
    assert raw.digest == "sha256:" + hashlib.sha256(b"not json").hexdigest()
    with pytest.raises(ManifestError):
        raw.parsed  # noqa: B018


@pytest.mark.parametrize(
    ("doc", "media_type", "is_index"),
    [
        pytest.param(DOCKER_LIST, mt.DOCKER_MANIFEST_LIST, True, id="docker-list"),
        pytest.param(OCI_INDEX, mt.OCI_INDEX, True, id="oci-index"),
        pytest.param(DOCKER_V2, mt.DOCKER_MANIFEST_V2, False, id="docker-v2"),
        pytest.param(SCHEMA1, mt.DOCKER_SCHEMA1, False, id="schema1"),
    ],
)
def test_raw_manifest_is_index(doc: dict[str, Any], media_type: str, is_index: bool) -> None:
    assert RawManifest(media_type, encode(doc)).is_index is is_index


def test_raw_manifest_from_document() -> None:
    raw = RawManifest.from_document(OCI_INDEX)
    assert raw.media_type == mt.OCI_INDEX
    assert json.loads(raw.data) == OCI_INDEX
    assert raw.digest == "sha256:" + hashlib.sha256(raw.data).hexdigest()
    assert (
        RawManifest.from_document(OCI_INDEX, mt.DOCKER_MANIFEST_LIST).media_type
        == mt.DOCKER_MANIFEST_LIST
    )


def test_raw_manifest_repr_hides_bytes() -> None:
    assert "data" not in repr(RawManifest(mt.OCI_MANIFEST, b"{}"))


@pytest.mark.parametrize(
    ("descriptor", "foreign"),
    [
        pytest.param({"mediaType": mt.DOCKER_FOREIGN_LAYER}, True, id="docker-foreign"),
        pytest.param({"mediaType": mt.OCI_NONDISTRIBUTABLE_LAYER}, True, id="oci-nondistributable"),
        pytest.param(
            {"mediaType": mt.OCI_LAYER_GZIP, "urls": ["https://x/l"]}, True, id="with-urls"
        ),
        pytest.param({"mediaType": mt.OCI_LAYER_GZIP, "urls": []}, False, id="empty-urls"),
        pytest.param({"mediaType": mt.OCI_LAYER_GZIP}, False, id="regular"),
    ],
)
def test_descriptor_is_foreign(descriptor: dict[str, Any], foreign: bool) -> None:
    assert (
        Descriptor.model_validate({"digest": LAYER1, "size": 1, **descriptor}).is_foreign is foreign
    )


def test_models_are_frozen() -> None:
    manifest = parse_manifest(encode(OCI_MANIFEST), mt.OCI_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    with pytest.raises(ValueError):
        manifest.layers = []  # type: ignore[misc]
