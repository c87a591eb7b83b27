"""Property tests: parsers and loaders return a valid result or a ConfigError, nothing else."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from syncer_core.config import (
    RuleSet,
    SourceSpec,
    TargetSpec,
    build_rules,
    load_images_file,
    normalise_auth_key,
    parse_auth_section,
    parse_destination,
    parse_source,
)
from syncer_core.config.files import parse_document
from syncer_core.digest import is_digest
from syncer_core.errors import ConfigError, InvalidReferenceError, RuleError
from syncer_core.plan import plan_jobs
from syncer_core.reference import Reference, is_valid_tag

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text without surrogates, so it can be written to a UTF-8 file.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)

# Reference-shaped text: mostly valid pieces glued with the separators rules use.
PIECES = st.sampled_from(
    [
        "nginx", "library", "quay.io", "localhost:5000", "Reg.IO", "a", "b-c", "x_y", "1.25",
        "v1", "latest", "sha256:" + "a" * 64, "sha256:abc", "sha512:" + "f" * 128, "", " ",
        "UPPER", "[::1]:5000", "index.docker.io", "(", ")", "^v", "$", "*", "\\", "{2,}",
    ]
)  # fmt: skip
SEPARATORS = st.sampled_from(["/", ":", ",", "@", ":/", "/", ", ", ":", "", "$", "${X}"])
REFERENCE_LIKE = st.lists(st.tuples(PIECES, SEPARATORS), max_size=8).map(
    lambda parts: "".join(a + b for a, b in parts)
)
# Mostly-valid rule text, so the "valid result" branch is exercised too.
REPO = st.builds(
    lambda host, path: f"{host}{path}",
    st.sampled_from(["", "quay.io/", "localhost:5000/", "index.docker.io/", "r.io/", "R.io/"]),
    st.sampled_from(["nginx", "library/nginx", "a/b/c", "coreos/etcd", "x_y.z", "Bad", "a//b"]),
)
TAG = st.sampled_from(["v1", "1.25", "latest", "sha256:" + "a" * 64, "", " v2 ", "-x", "a" * 129])
SUFFIX = st.one_of(
    st.just(""),
    st.lists(TAG, min_size=1, max_size=3).map(lambda tags: ":" + ",".join(tags)),
    st.just("@sha256:" + "b" * 64),
    st.sampled_from(["^v", "rc", "(", "[a-", "", "a{1,2}", "x/y", "(?P<n>a)"]).map(
        lambda regex: f":/{regex}/"
    ),
)
STRUCTURED = st.builds(lambda repo, suffix: repo + suffix, REPO, SUFFIX)
RULE_TEXT = st.one_of(TEXT, REFERENCE_LIKE, STRUCTURED, STRUCTURED)

JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT, REFERENCE_LIKE
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
DESTINATION = st.one_of(
    st.none(), STRUCTURED, st.lists(st.one_of(st.none(), STRUCTURED), min_size=1, max_size=3)
)
IMAGES_DICT = st.one_of(
    st.dictionaries(RULE_TEXT, st.one_of(JSON_VALUE, DESTINATION), max_size=6),
    st.dictionaries(STRUCTURED, DESTINATION, max_size=3),
)
ENV = st.dictionaries(
    st.sampled_from(["X", "REG", "DEFAULT_REGISTRY"]), st.sampled_from(["", "r.io", "bad host"])
)


def _check_source(spec: SourceSpec) -> None:
    assert spec.repository.tag is None and spec.repository.digest is None
    assert all(is_digest(i) or is_valid_tag(i) for i in spec.items)
    assert (spec.mode == "regex") == (spec.pattern is not None)
    assert (spec.mode == "items") == bool(spec.items)


def _check_target(spec: TargetSpec) -> None:
    assert spec.repository.tag is None and spec.repository.digest is None
    assert all(is_digest(i) or is_valid_tag(i) for i in spec.items)


@FUZZ
@given(RULE_TEXT)
def test_parse_source_only_rule_error(text):
    try:
        spec = parse_source(text)
    except RuleError as exc:
        assert exc.key == text
        return
    _check_source(spec)


@FUZZ
@given(RULE_TEXT)
def test_parse_destination_only_rule_error(text):
    try:
        spec = parse_destination(text)
    except RuleError:
        return
    _check_target(spec)


@FUZZ
@given(RULE_TEXT)
def test_reference_parse_round_trips_or_raises_invalid_reference(text):
    try:
        ref = Reference.parse(text)
    except InvalidReferenceError as exc:
        assert isinstance(exc, ValueError)
        return
    assert Reference.parse(str(ref)) == ref


@FUZZ
@given(RULE_TEXT)
def test_normalise_auth_key_total(text):
    try:
        key = normalise_auth_key(text)
    except InvalidReferenceError:
        return
    assert normalise_auth_key(key) == key


@FUZZ
@given(st.dictionaries(RULE_TEXT, JSON_VALUE, max_size=5))
@example({"quay.io/coreos": {"username": "u", "password": "p", "insecure": True}})
@example({"Quay.io": {"token": "t"}, "quay.io/a/b": {"insecure": True}, "nginx": {}})
def test_auth_section_only_config_error(data):
    try:
        config = parse_auth_section(data, file="auth.yaml", env={})
    except ConfigError as exc:
        assert "auth.yaml" in str(exc)
        return
    assert config.lookup(Reference.parse("docker.io/x/y")) is not None
    assert len(config.entries) == len(data)
    for key in config.entries:
        assert isinstance(key, str)
        normal = normalise_auth_key(key)
        registry, _, path = normal.partition("/")
        if path:
            # A repository spelled exactly like the key is matched by that key
            # (built directly: `Reference.parse` would add `library/`).
            assert config.match(Reference(registry, path)) == key, (key, normal)
        # A repository below the key is matched by it, or by a longer key under it.
        below = Reference(registry, f"{path}/zz-probe" if path else "zz-probe")
        winner = config.match(below)
        assert winner is not None, (key, below)
        won = normalise_auth_key(winner)
        assert won == normal or won.startswith(normal + "/"), (key, winner)
        assert config.lookup(below).insecure == config.entries[winner].insecure


@FUZZ
@given(IMAGES_DICT, ENV, st.sampled_from([None, "", "flag.io", "bad flag"]))
def test_build_rules_only_config_error(data, env, flag):
    try:
        rules = build_rules(data, file="images.yaml", env=env, default_registry=flag)
    except ConfigError as exc:
        assert exc.file == "images.yaml"
        assert exc.key in data
        return
    assert isinstance(rules, RuleSet)
    for rule in rules.rules:
        _check_source(rule.source)
        _check_target(rule.target)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(IMAGES_DICT, ENV, st.sampled_from(["yaml", "json"]))
def test_images_loader_on_generated_files(fuzz_dir, data, env, fmt):
    path = fuzz_dir / f"images.{fmt}"
    text = json.dumps(data) if fmt == "json" else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    try:
        rules = load_images_file(path, env=env)
    except ConfigError as exc:
        assert exc.file == str(path)
        return
    assert len(rules.rules) >= len(data)  # every key yields at least one rule


@FUZZ
@given(st.one_of(TEXT, st.text(alphabet=string.printable + "{}[]:-'\"&*!|>%@`", max_size=80)))
def test_parse_document_only_config_error(text):
    for fmt in ("yaml", "json"):
        try:
            data = parse_document(text, fmt, file=f"f.{fmt}")
        except ConfigError as exc:
            assert f"f.{fmt}" in str(exc)
            continue
        assert isinstance(data, dict) and all(isinstance(k, str) for k in data)


TAG_LIST = st.lists(st.one_of(st.sampled_from(["v1", "v2", "1.0", "latest", "rc1"]), TEXT))


@FUZZ
@given(IMAGES_DICT, st.dictionaries(RULE_TEXT, TAG_LIST, max_size=3), TAG_LIST)
def test_planning_never_raises(data, extra_listings, tags):
    try:
        rules = build_rules(data, file="i.yaml", env={}, default_registry="d.io").rules
    except ConfigError:
        return
    listings = {**extra_listings}
    for index, rule in enumerate(rules):
        if index % 2 == 0:
            listings[rule.source.repository.name] = tags
    for plan in plan_jobs(rules, listings):
        assert (plan.error is None) or not plan.jobs
        for job in plan.jobs:
            assert (job.source.tag is None) != (job.source.digest is None)
            assert (job.target.tag is None) != (job.target.digest is None)
