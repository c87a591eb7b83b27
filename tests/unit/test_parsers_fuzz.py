"""Property tests: the pure parsers fail only in their documented way, whatever the input."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer_core import mediatypes as mt
from syncer_core.errors import InvalidReferenceError, ManifestError
from syncer_core.manifest import detect_media_type, parse_manifest
from syncer_core.reference import Reference
from syncer_core.registry.challenge import Challenge, parse_www_authenticate

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that often is, or nearly is, a reference, so the success path is exercised too.
_REGISTRY = st.sampled_from(
    [
        "",
        "docker.io/",
        "index.docker.io/",
        "localhost/",
        "localhost:5000/",
        "quay.io/",
        "127.0.0.1:5000/",
        "[::1]:5000/",
        "Reg.Example:1/",
        "-bad.io/",
        "a_b.io/",
    ]
)
_COMPONENT = st.from_regex(r"[a-z0-9]{1,4}(?:(?:[._]|__|-+)[a-z0-9]{1,3}){0,2}", fullmatch=True)
_NOISE = st.text(alphabet="aZ09._-:/@ \n", max_size=3)
_TAG = st.one_of(st.just(""), st.from_regex(r":[\w][\w.-]{0,5}", fullmatch=True), _NOISE)
_DIGEST = st.sampled_from(
    ["", "@sha256:" + "a" * 64, "@sha512:" + "b" * 128, "@sha256:" + "A" * 64, "@sha256:abc", "@"]
)
REFERENCE_LIKE = st.builds(
    lambda registry, parts, noise, tag, digest: registry + "/".join(parts) + noise + tag + digest,
    _REGISTRY,
    st.lists(_COMPONENT, min_size=1, max_size=4),
    st.one_of(st.just(""), _NOISE),
    _TAG,
    _DIGEST,
)


@FUZZ
@given(st.one_of(st.text(), REFERENCE_LIKE))
def test_reference_parse_only_raises_invalid_reference(value: str) -> None:
    try:
        ref = Reference.parse(value)
    except InvalidReferenceError as exc:
        assert exc.reference == value
        return
    assert isinstance(ref, Reference)
    assert Reference.parse(str(ref)) == ref
    assert str(Reference.parse(str(ref))) == str(ref)


@FUZZ
@given(REFERENCE_LIKE)
def test_reference_like_text_round_trips_when_valid(value: str) -> None:
    try:
        ref = Reference.parse(value)
    except InvalidReferenceError:
        return
    assert "\n" not in str(ref)
    assert ref.with_tag("t").tag == "t"
    assert Reference.parse(str(ref.with_tag("t"))) == ref.with_tag("t")


_HEADER_ALPHABET = st.sampled_from(list('Bearer Basic realm= service scope error "\\,\t=@ab:/'))
HEADER_LIKE = st.one_of(
    st.text(),
    st.text(alphabet=_HEADER_ALPHABET),
    st.builds(
        lambda scheme, params: scheme + " " + ",".join(f'{k}="{v}"' for k, v in params),
        st.sampled_from(["Bearer", "Basic", "bearer", "X"]),
        st.lists(st.tuples(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.text(max_size=10))),
    ),
)


@FUZZ
@given(st.lists(HEADER_LIKE, max_size=4))
def test_parse_www_authenticate_never_raises(values: list[str]) -> None:
    challenges = parse_www_authenticate(values)
    assert isinstance(challenges, list)
    for challenge in challenges:
        assert isinstance(challenge, Challenge)
        assert challenge.scheme and challenge.scheme == challenge.scheme.lower()
        assert all(key == key.lower() for key in challenge.params)
        assert isinstance(challenge.scopes, list)


@FUZZ
@given(st.text())
def test_parse_www_authenticate_single_value_never_raises(value: str) -> None:
    assert parse_www_authenticate([value]) == parse_www_authenticate(value)


_MANIFEST_KEYS = st.sampled_from(
    [
        "schemaVersion",
        "mediaType",
        "artifactType",
        "config",
        "layers",
        "blobs",
        "manifests",
        "subject",
        "annotations",
        "fsLayers",
        "blobSum",
        "signatures",
        "digest",
        "size",
        "urls",
        "platform",
        "architecture",
        "os",
        "os.version",
        "os.features",
        "variant",
        "name",
        "tag",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(sorted(mt.MANIFEST_TYPES)),
    st.sampled_from(["sha256:" + "a" * 64, "sha512:" + "b" * 128, "sha256:x"]),
)
JSONISH = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(_MANIFEST_KEYS, st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=30,
)
MEDIA_TYPES = sorted(mt.MANIFEST_TYPES)


def _check_manifest_bytes(data: bytes, content_type: str | None) -> None:
    with contextlib.suppress(ManifestError):
        detect_media_type(data, content_type)
    for media_type in MEDIA_TYPES:
        with contextlib.suppress(ManifestError):
            parse_manifest(data, media_type)


@FUZZ
@given(
    st.binary(max_size=512),
    st.one_of(st.none(), st.sampled_from(MEDIA_TYPES), st.text(max_size=10)),
)
def test_manifest_parsers_on_arbitrary_bytes_raise_only_manifest_error(
    data: bytes, content_type: str | None
) -> None:
    _check_manifest_bytes(data, content_type)


@FUZZ
@given(JSONISH, st.one_of(st.none(), st.sampled_from(MEDIA_TYPES)))
def test_manifest_parsers_on_jsonish_raise_only_manifest_error(
    doc: Any, content_type: str | None
) -> None:
    _check_manifest_bytes(json.dumps(doc).encode(), content_type)
    if isinstance(doc, dict):
        with contextlib.suppress(ManifestError):
            detect_media_type(doc, content_type)


@FUZZ
@given(st.dictionaries(_MANIFEST_KEYS, JSONISH, max_size=8))
def test_manifest_shaped_documents_raise_only_manifest_error(doc: dict[str, Any]) -> None:
    _check_manifest_bytes(json.dumps(doc).encode(), None)
