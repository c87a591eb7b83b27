"""Images file and legacy --config: every rule form in YAML and JSON, and malformed files."""

from __future__ import annotations

import pytest

from syncer_core.config import (
    ignored_flags,
    load_images_file,
    load_legacy_config,
    parse_destination,
    parse_source,
)
from syncer_core.errors import ConfigError, RuleError
from syncer_core.reference import Reference
from tests.unit.helpers import write_data

FORMATS = ["yaml", "json"]
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def summary(rule):
    return (
        rule.source.repository.name,
        rule.source.mode,
        rule.source.items,
        rule.target.repository.name,
        rule.target.items,
    )


# (id, data, kwargs for the loader, expected summaries in order)
FORMS = [
    ("all-tags", {"quay.io/coreos/etcd": "reg.io/etcd"}, {},
     [("quay.io/coreos/etcd", "all", (), "reg.io/etcd", ())]),
    ("one-tag", {"quay.io/coreos/etcd:v3.5": "reg.io/etcd"}, {},
     [("quay.io/coreos/etcd", "items", ("v3.5",), "reg.io/etcd", ())]),
    ("tag-list-trimmed", {"quay.io/c/e:v1, v2 ,v3": "reg.io/e"}, {},
     [("quay.io/c/e", "items", ("v1", "v2", "v3"), "reg.io/e", ())]),
    ("tag-list-with-digest", {f"quay.io/c/e:v1,{D1}": "reg.io/e"}, {},
     [("quay.io/c/e", "items", ("v1", D1), "reg.io/e", ())]),
    ("digest-first-in-list", {f"quay.io/c/e@{D1},v2": "reg.io/e"}, {},
     [("quay.io/c/e", "items", (D1, "v2"), "reg.io/e", ())]),
    ("digest", {f"quay.io/c/e@{D1}": "reg.io/e"}, {},
     [("quay.io/c/e", "items", (D1,), "reg.io/e", ())]),
    ("tag-and-digest-source-keeps-digest", {f"quay.io/c/e:v1@{D1}": "reg.io/e:x"}, {},
     [("quay.io/c/e", "items", (D1,), "reg.io/e", ("x",))]),
    ("regex", {"alpine:/^3\\.1[0-9]$/": "reg.io/alpine"}, {},
     [("docker.io/library/alpine", "regex", (), "reg.io/alpine", ())]),
    ("empty-regex", {"alpine://": "reg.io/alpine"}, {},
     [("docker.io/library/alpine", "regex", (), "reg.io/alpine", ())]),
    ("rename", {"nginx:1.25": "reg.io/web:stable"}, {},
     [("docker.io/library/nginx", "items", ("1.25",), "reg.io/web", ("stable",))]),
    ("paired-list", {"nginx:a,b,c": "reg.io/web:x, y,z"}, {},
     [("docker.io/library/nginx", "items", ("a", "b", "c"), "reg.io/web", ("x", "y", "z"))]),
    ("digest-destination-equal", {f"nginx@{D1}": f"reg.io/web@{D1}"}, {},
     [("docker.io/library/nginx", "items", (D1,), "reg.io/web", (D1,))]),
    ("tag-to-digest-destination", {"nginx:1": f"reg.io/web@{D1}"}, {},
     [("docker.io/library/nginx", "items", ("1",), "reg.io/web", (D1,))]),
    ("digest-to-tag", {f"nginx@{D1}": "reg.io/web:pinned"}, {},
     [("docker.io/library/nginx", "items", (D1,), "reg.io/web", ("pinned",))]),
    ("all-tags-to-tag-checked-at-plan-time", {"nginx": "reg.io/web:one"}, {},
     [("docker.io/library/nginx", "all", (), "reg.io/web", ("one",))]),
    ("list-destination-dedup-order-kept",
     {"nginx:1": ["b.io/n", "a.io/n", "b.io/n", "a.io/n:1", "docker.io/x", "x"]}, {},
     [("docker.io/library/nginx", "items", ("1",), "b.io/n", ()),
      ("docker.io/library/nginx", "items", ("1",), "a.io/n", ()),
      ("docker.io/library/nginx", "items", ("1",), "a.io/n", ("1",)),
      ("docker.io/library/nginx", "items", ("1",), "docker.io/library/x", ())]),
    ("env-expansion", {"nginx": ["${REG}/n", "$REG/m:${TAG}"]},
     {"env": {"REG": "r.io", "TAG": "t"}},
     [("docker.io/library/nginx", "all", (), "r.io/n", ()),
      ("docker.io/library/nginx", "all", (), "r.io/m", ("t",))]),
    ("empty-destination-flag", {"quay.io/coreos/etcd:v1": ""}, {"default_registry": "mirror.io"},
     [("quay.io/coreos/etcd", "items", ("v1",), "mirror.io/coreos/etcd", ())]),
    ("null-destination-env", {"nginx": None}, {"env": {"DEFAULT_REGISTRY": "m.io:5000"}},
     [("docker.io/library/nginx", "all", (), "m.io:5000/library/nginx", ())]),
    ("flag-wins-over-env", {"nginx": ""},
     {"default_registry": "flag.io", "env": {"DEFAULT_REGISTRY": "env.io"}},
     [("docker.io/library/nginx", "all", (), "flag.io/library/nginx", ())]),
    ("empty-flag-falls-back-to-env", {"nginx": ""},
     {"default_registry": "", "env": {"DEFAULT_REGISTRY": "env.io/"}},
     [("docker.io/library/nginx", "all", (), "env.io/library/nginx", ())]),
    ("default-registry-with-path", {"nginx": [None, "x.io/n"]}, {"default_registry": "m.io/mirror"},
     [("docker.io/library/nginx", "all", (), "m.io/mirror/library/nginx", ()),
      ("docker.io/library/nginx", "all", (), "x.io/n", ())]),
    ("hub-aliases-and-ports", {"index.docker.io/library/busybox:1": "localhost:5000/bb"}, {},
     [("docker.io/library/busybox", "items", ("1",), "localhost:5000/bb", ())]),
    ("same-repo-retag", {"reg.io/a:v1": "reg.io/a:v1-backup"}, {},
     [("reg.io/a", "items", ("v1",), "reg.io/a", ("v1-backup",))]),
    ("empty-mapping", {}, {}, []),
]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("data", "kwargs", "expected"), [pytest.param(*c[1:], id=c[0]) for c in FORMS]
)
def test_images_forms(tmp_path, fmt, data, kwargs, expected):
    kwargs = {"env": {}, **kwargs}
    rules = load_images_file(write_data(tmp_path, data, fmt, "images"), **kwargs)
    assert [summary(rule) for rule in rules.rules] == expected
    assert rules.file == str(tmp_path / f"images.{fmt}")


def test_rule_order_follows_file_and_names(tmp_path):
    data = {"b.io/x:1": "c.io/x", "a.io/y": ["c.io/y", "d.io/y:1"]}
    rules = load_images_file(write_data(tmp_path, data, "yaml", "images"), env={})
    assert [rule.name for rule in rules.rules] == [
        "b.io/x:1 -> c.io/x",
        "a.io/y -> c.io/y",
        "a.io/y -> d.io/y:1",
    ]


def test_regex_is_compiled_with_search_semantics():
    source = parse_source("reg.io/a:/rc[0-9]/")
    assert source.pattern is not None
    assert source.pattern.search("v1.0-rc1")
    assert not source.pattern.search("v1.0")
    assert source.needs_listing


def test_parsers_return_references():
    source = parse_source(f"nginx:1,{D1}")
    assert source.reference("1") == Reference.parse("nginx:1")
    assert source.reference(D1) == Reference.parse(f"nginx@{D1}")
    target = parse_destination("reg.io/n:a,b")
    assert target.reference("a") == Reference.parse("reg.io/n:a")


# ------------------------------------------------------------------- malformed

BAD_REGEX = "reg.io/a:/(/"
# (id, data (dumped to YAML and JSON), kwargs, key named, fragment of the problem)
MALFORMED = [
    ("dest-number", {"nginx": 5}, {}, "nginx", "got a number"),
    ("dest-float", {"nginx": 1.5}, {}, "nginx", "got a number"),
    ("dest-bool", {"nginx": True}, {}, "nginx", "got a boolean"),
    ("dest-mapping-unknown-field", {"nginx": {"dest": "reg.io/n"}}, {}, "nginx", "'dest'"),
    ("dest-empty-list", {"nginx": []}, {}, "nginx", "destination list is empty"),
    ("list-element-number", {"nginx": ["r.io/n", 3]}, {}, "nginx", "destination[1]"),
    ("list-element-mapping", {"nginx": [{"a": "b"}]}, {}, "nginx", "destination[0]"),
    ("list-element-list", {"nginx": [["r.io/n"]]}, {}, "nginx", "got a list"),
    ("empty-dest-no-default", {"nginx": ""}, {}, "nginx", "DEFAULT_REGISTRY"),
    ("null-dest-no-default", {"nginx": None}, {}, "nginx", "--registry"),
    ("empty-list-element-no-default", {"nginx": ["r.io/n", ""]}, {}, "nginx", "destination[1]"),
    ("dest-expands-empty", {"nginx": "$UNSET_DEST"}, {}, "nginx", "UNSET_DEST"),
    ("dest-expands-empty-braces", {"nginx": "${NOPE}"}, {}, "nginx", "expands to an empty"),
    ("dest-expands-invalid", {"nginx": "$NOPE/x"}, {}, "nginx", "invalid destination"),
    ("source-uppercase", {"Quay.io/CoreOS/etcd": "r.io/e"}, {}, "Quay.io/CoreOS/etcd", "lowercase"),
    ("source-empty-tag", {"nginx:": "r.io/n"}, {}, "nginx:", "invalid tag"),
    ("source-trailing-comma", {"nginx:v1,": "r.io/n"}, {}, "nginx:v1,", "stray comma"),
    ("source-empty-item", {"nginx:v1,,v2": "r.io/n"}, {}, "nginx:v1,,v2", "item 2"),
    ("source-bad-item", {"nginx:v1,b@d": "r.io/n"}, {}, "nginx:v1,b@d", "'b@d'"),
    ("source-list-without-tag", {"nginx,v2": "r.io/n"}, {}, "nginx,v2", "needs a tag"),
    ("source-bad-digest", {"nginx@sha256:abc": "r.io/n"}, {}, "nginx@sha256:abc", "digest"),
    ("regex-unclosed", {"nginx:/^v1": "r.io/n"}, {}, "nginx:/^v1", "closing '/'"),
    ("regex-uncompilable", {BAD_REGEX: "r.io/n"}, {}, BAD_REGEX, "invalid tag regex"),
    ("regex-with-tag", {"nginx:v1:/x/": "r.io/n"}, {}, "nginx:v1:/x/", "must not also name"),
    ("regex-bad-repo", {"NGINX:/x/": "r.io/n"}, {}, "NGINX:/x/", "source repository"),
    ("dest-regex", {"nginx": "r.io/n:/x/"}, {}, "nginx", "only allowed in a source"),
    ("dest-tag-and-digest", {"nginx:1": f"r.io/n:1@{D1}"}, {}, "nginx:1", "both a tag"),
    ("count-two-to-one", {"nginx:v1,v2": "r.io/n:a"}, {}, "nginx:v1,v2", "names 1"),
    ("count-one-to-two", {"nginx:v1": "r.io/n:a,b"}, {}, "nginx:v1", "source names 1"),
    ("digest-mismatch", {f"nginx@{D1}": f"r.io/n@{D2}"}, {}, f"nginx@{D1}", "differs"),
    ("dest-invalid", {"nginx": "r.io/UPPER"}, {}, "nginx", "invalid destination"),
    ("dest-trailing-comma", {"nginx:a,b": "r.io/n:x,"}, {}, "nginx:a,b", "stray comma"),
    ("dest-is-source-repo", {"r.io/n": "r.io/n"}, {}, "r.io/n", "source repository itself"),
    ("dest-is-source-image", {"r.io/n:1": "r.io/n:1"}, {}, "r.io/n:1", "source image itself"),
    ("default-makes-self-copy", {"r.io/n": ""}, {"default_registry": "r.io"}, "r.io/n", "itself"),
    ("default-registry-invalid", {"nginx": ""}, {"default_registry": "bad host"}, "nginx",
     "invalid destination"),
    ("list-element-count", {"nginx:1": ["r.io/n", "r.io/n:a,b"]}, {}, "nginx:1", "destination[1]"),
    ("source-inner-space", {"nginx :1": "r.io/n"}, {}, "nginx :1", "invalid source"),
    ("source-empty-key", {"": "r.io/n"}, {}, "", "source is empty"),
    ("source-blank-key", {"   ": "r.io/n"}, {}, "   ", "source is empty"),
]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("data", "kwargs", "key", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in MALFORMED]
)
def test_malformed_rule_names_file_and_key(tmp_path, fmt, data, kwargs, key, fragment):
    path = write_data(tmp_path, data, fmt, "images")
    with pytest.raises(RuleError) as info:
        load_images_file(path, env={}, **kwargs)
    message = str(info.value)
    assert (info.value.file, info.value.key) == (str(path), key)
    assert str(path) in message
    assert f"key {key!r}" in message
    assert fragment in message


# Problems found by the loader itself (text-level): ConfigError, not RuleError.
RAW_MALFORMED = [
    ("duplicate-yaml", "i.yaml", "nginx: a.io/n\nnginx: b.io/n\n", "nginx", "duplicate key"),
    ("duplicate-json", "i.json", '{"nginx": "a.io/n", "nginx": "b.io/n"}', "nginx", "duplicate"),
    ("duplicate-quoted-yaml", "i.yml", "'a:1': x.io/a\n\"a:1\": y.io/a\n", "a:1", "line 2"),
    ("float-key", "i.yaml", "1.5: r.io/n\n", "1.5", "keys must be strings"),
    ("null-key", "i.yaml", "~: r.io/n\n", "None", "keys must be strings"),
]


@pytest.mark.parametrize(
    ("name", "content", "key", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in RAW_MALFORMED]
)
def test_malformed_raw_names_file_and_key(tmp_path, name, content, key, fragment):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_images_file(path, env={})
    assert (info.value.file, info.value.key) == (str(path), key)
    assert f"key {key!r}" in str(info.value)
    assert fragment in str(info.value)


FILE_LEVEL = [
    ("empty", "i.yaml", "", "file is empty"),
    ("empty-json", "i.json", "", "file is empty"),
    ("comments", "i.yml", "# only\n", "empty"),
    ("top-list", "i.yaml", "- nginx\n", "must be a mapping, got a list"),
    ("top-number", "i.json", "3", "got a number"),
    ("yaml-syntax", "i.yaml", "nginx: [a\n", "invalid YAML at line"),
    ("json-syntax", "i.json", '{"nginx": }', "invalid JSON at line 1"),
    ("suffix", "images.conf", "nginx: r.io/n\n", "unsupported file extension '.conf'"),
    ("yaml-tag", "i.yaml", "nginx: !!python/object:os.system x\n", "invalid YAML"),
    ("too-deep", "i.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize(
    ("name", "content", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in FILE_LEVEL]
)
def test_malformed_file_level(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_images_file(path, env={})
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_images_file(tmp_path / "nope.yaml", env={})


def test_uppercase_suffix_accepted(tmp_path):
    path = tmp_path / "IMAGES.YML"
    path.write_text("nginx:1: r.io/n\n", encoding="utf-8")
    assert len(load_images_file(path, env={}).rules) == 1


def test_yaml_aliases_reuse_destinations(tmp_path):
    path = tmp_path / "i.yaml"
    path.write_text("nginx:1: &dst [a.io/n, b.io/n]\nbusybox:1: *dst\n", encoding="utf-8")
    rules = load_images_file(path, env={}).rules
    assert [rule.name for rule in rules] == [
        "nginx:1 -> a.io/n",
        "nginx:1 -> b.io/n",
        "busybox:1 -> a.io/n",
        "busybox:1 -> b.io/n",
    ]


# ---------------------------------------------------------------------- legacy


@pytest.mark.parametrize("fmt", FORMATS)
def test_legacy_config(tmp_path, no_docker, fmt):
    data = {
        "auth": {"quay.io": {"username": "$U", "password": "${P}", "insecure": True}},
        "images": {"quay.io/coreos/etcd:v1": ["r.io/etcd", "$DST/etcd"], "nginx": ""},
    }
    path = write_data(tmp_path, data, fmt, "config")
    env = {"U": "user", "P": "pw", "DST": "d.io", "DEFAULT_REGISTRY": "m.io"}
    config = load_legacy_config(path, env=env, docker_config=no_docker)
    access = config.auth.lookup(Reference.parse("quay.io/coreos/etcd"))
    assert access.username == "user"
    assert access.password is not None and access.password.get_secret_value() == "pw"
    assert access.insecure
    assert [rule.target.repository.name for rule in config.images.rules] == [
        "r.io/etcd",
        "d.io/etcd",
        "m.io/library/nginx",
    ]
    assert config.file == str(path)


@pytest.mark.parametrize(
    ("data", "rules", "keys"),
    [
        ({"images": {"nginx:1": "r.io/n"}}, 1, []),
        ({"auth": {"r.io": {"insecure": True}}}, 0, ["r.io"]),
        ({"auth": None, "images": None}, 0, []),
    ],
)
def test_legacy_optional_sections(tmp_path, no_docker, data, rules, keys):
    config = load_legacy_config(
        write_data(tmp_path, data, "yaml", "c"), env={}, docker_config=no_docker
    )
    assert len(config.images.rules) == rules
    assert sorted(config.auth.entries) == keys


LEGACY_MALFORMED = [
    ("unknown-section", {"image": {"nginx": "r.io/n"}}, "image", "unknown section"),
    ("auth-not-mapping", {"auth": ["q.io"]}, "auth", "section must be a mapping"),
    ("images-not-mapping", {"images": "nginx"}, "images", "got a string"),
    ("auth-entry-bad", {"auth": {"q.io": {"insecure": "yes"}}}, "q.io", "insecure"),
    ("images-entry-bad", {"images": {"nginx": 5}}, "nginx", "got a number"),
    ("images-bad-source", {"images": {"NGINX": "r.io/n"}}, "NGINX", "invalid source"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("data", "key", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in LEGACY_MALFORMED]
)
def test_legacy_malformed(tmp_path, no_docker, fmt, data, key, fragment):
    path = write_data(tmp_path, data, fmt, "config")
    with pytest.raises(ConfigError) as info:
        load_legacy_config(path, env={}, docker_config=no_docker)
    assert (info.value.file, info.value.key) == (str(path), key)
    assert fragment in str(info.value)


def test_legacy_non_string_nested_key(tmp_path, no_docker):
    path = tmp_path / "c.yaml"
    path.write_text("images:\n  5: r.io/n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="keys must be strings") as info:
        load_legacy_config(path, env={}, docker_config=no_docker)
    assert info.value.key == "images.5"


@pytest.mark.parametrize(
    ("config", "auth", "images", "expected"),
    [
        (None, "a.yaml", "i.yaml", []),
        ("", "a.yaml", None, []),
        ("c.yaml", None, None, []),
        ("c.yaml", "a.yaml", None, ["--auth"]),
        ("c.yaml", None, "i.yaml", ["--images"]),
        ("c.yaml", "a.yaml", "i.yaml", ["--auth", "--images"]),
        ("c.yaml", "", "", []),
    ],
)
def test_ignored_flags(config, auth, images, expected):
    assert ignored_flags(config, auth, images) == expected
