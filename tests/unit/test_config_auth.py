"""Auth file: every form in YAML and JSON, longest-prefix lookup, malformed files, secrets."""

from __future__ import annotations

import itertools
import json
import random
import traceback
from pathlib import Path

import pytest
from pydantic import SecretStr

from syncer_core.config import (
    AuthConfig,
    DockerConfig,
    load_auth_file,
    normalise_auth_key,
    parse_auth_section,
)
from syncer_core.errors import ConfigError
from syncer_core.reference import Reference
from syncer_core.registry.access import RegistryAccess
from tests.unit.helpers import write_config, write_data

SECRET = "hunter2-S3CRET-0xC0FFEE"
FORMATS = ["yaml", "json"]


def write_raw(tmp_path: Path, text: str, name: str = "auth.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, no_docker: DockerConfig, env: dict[str, str] | None = None) -> AuthConfig:
    return load_auth_file(path, env=env or {}, docker_config=no_docker)


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# --------------------------------------------------------------------------- forms

FORM_CASES = [
    pytest.param(
        {"quay.io": {"username": "u", "password": "p"}},
        "quay.io/coreos/etcd:v1",
        {"username": "u", "password": "p", "insecure": False},
        id="registry-key",
    ),
    pytest.param(
        {"quay.io/coreos": {"username": "u", "password": "p", "insecure": True}},
        "quay.io/coreos/etcd",
        {"username": "u", "password": "p", "insecure": True},
        id="namespace-key",
    ),
    pytest.param(
        {"localhost:5000": {"insecure": True}},
        "localhost:5000/a/b:1",
        {"username": None, "password": None, "insecure": True},
        id="insecure-only",
    ),
    pytest.param(
        {"ghcr.io": {"token": "tok"}},
        "ghcr.io/o/r",
        {"token": "tok", "password": None},
        id="static-token",
    ),
    pytest.param(
        {"docker.io": {"username": "hub", "password": "pw"}},
        "nginx:1.25",
        {"username": "hub", "password": "pw"},
        id="docker-io-for-short-name",
    ),
    pytest.param(
        {"index.docker.io": {"username": "hub", "password": "pw"}},
        "docker.io/library/nginx",
        {"username": "hub", "password": "pw"},
        id="index-docker-io-alias",
    ),
    pytest.param(
        {"registry-1.docker.io/library": {"username": "hub", "password": "pw"}},
        "nginx",
        {"username": "hub", "password": "pw"},
        id="registry-1-alias-with-namespace",
    ),
    pytest.param(
        {"myteam": {"username": "t", "password": "pw"}},
        "myteam/app:v1",
        {"username": "t", "password": "pw"},
        id="hostless-key-is-docker-hub-namespace",
    ),
    pytest.param(
        {"reg:5000/team/app": {"username": "u", "password": "p"}},
        "reg:5000/team/app:v1",
        {"username": "u", "password": "p"},
        id="exact-repository-key",
    ),
    pytest.param(
        {"quay.io/coreos/": {"username": "u", "password": "p"}},
        "quay.io/coreos/etcd",
        {"username": "u", "password": "p"},
        id="trailing-slash-key",
    ),
    pytest.param(
        {"Quay.IO": {"username": "u", "password": "p"}},
        "quay.io/x/y",
        {"username": "u", "password": "p"},
        id="host-case-insensitive",
    ),
    pytest.param(
        {"quay.io/core": {"username": "u", "password": "p"}},
        "quay.io/coreos/x",
        {"username": None, "password": None},
        id="no-partial-component-match",
    ),
    pytest.param(
        {"host": {"username": "u", "password": "p"}},
        "host:5000/x",
        {"username": None, "password": None},
        id="host-does-not-match-host-port",
    ),
    pytest.param(
        {"quay.io": {"username": "u", "password": ""}},
        "quay.io/x",
        {"username": None, "password": None},
        id="empty-password-is-anonymous",
    ),
    pytest.param(
        {"quay.io": {"username": "u", "password": None}},
        "quay.io/x",
        {"username": None, "password": None},
        id="null-password-is-anonymous",
    ),
    pytest.param({}, "quay.io/x", {"username": None, "insecure": False}, id="empty-mapping"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("data", "image", "expected"), FORM_CASES)
def test_auth_forms(tmp_path, no_docker, fmt, data, image, expected):
    config = load(write_data(tmp_path, data, fmt, "auth"), no_docker)
    access = config.lookup(Reference.parse(image))
    assert isinstance(access, RegistryAccess)
    for field, value in expected.items():
        actual = getattr(access, field)
        actual = secret(actual) if isinstance(actual, SecretStr) or field == "password" else actual
        if field == "token":
            actual = secret(access.token)
        assert actual == value, field


@pytest.mark.parametrize("fmt", FORMATS)
def test_env_expansion(tmp_path, no_docker, fmt):
    data = {
        "a.io": {"username": "${USER_A}", "password": "$PASS_A"},
        "b.io": {"username": "pre-$USER_A-post", "token": "${TOKEN_B}x"},
        "c.io": {"username": "$UNSET_USER", "password": "$UNSET_PASS", "insecure": True},
    }
    env = {"USER_A": "alice", "PASS_A": "pa$$word", "TOKEN_B": "tb"}
    config = load(write_data(tmp_path, data, fmt, "auth"), no_docker, env)
    a = config.lookup(Reference.parse("a.io/x"))
    assert (a.username, secret(a.password)) == ("alice", "pa$$word")
    b = config.lookup(Reference.parse("b.io/x"))
    assert (b.username, secret(b.token)) == ("pre-alice-post", "tbx")
    c = config.lookup(Reference.parse("c.io/x"))
    assert (c.username, c.password, c.insecure) == (None, None, True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_ca_file_relative_to_auth_file(tmp_path, no_docker, fmt):
    (tmp_path / "certs").mkdir()
    ca = tmp_path / "certs" / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    data = {"reg.local:8443": {"ca_file": "certs/ca.pem"}, "abs.local": {"ca_file": str(ca)}}
    config = load(write_data(tmp_path, data, fmt, "auth"), no_docker)
    assert config.lookup(Reference.parse("reg.local:8443/a")).ca_file == ca
    assert config.lookup(Reference.parse("abs.local/a")).ca_file == ca


def test_insecure_and_ca_apply_with_docker_config_credentials(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    docker_dir = tmp_path / "docker"
    write_config(docker_dir, {"auths": {"reg.local": {"username": "d", "password": "dp"}}})
    path = write_data(
        tmp_path, {"reg.local": {"insecure": True, "ca_file": str(ca)}}, "yaml", "auth"
    )
    config = load_auth_file(path, env={"DOCKER_CONFIG": str(docker_dir)})
    access = config.lookup(Reference.parse("reg.local/a/b"))
    assert (access.username, secret(access.password)) == ("d", "dp")
    assert (access.insecure, access.ca_file) == (True, ca)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_chunk_size_reaches_the_access_with_and_without_credentials(tmp_path, fmt):
    docker_dir = tmp_path / "docker"
    write_config(docker_dir, {"auths": {"reg.local": {"username": "d", "password": "dp"}}})
    data = {"reg.local": {"chunk_size": 4194304}, "q.io": {"token": "t", "chunk_size": 262144}}
    path = write_data(tmp_path, data, fmt, "auth")
    config = load_auth_file(path, env={"DOCKER_CONFIG": str(docker_dir)})
    from_docker = config.lookup(Reference.parse("reg.local/a/b"))
    assert (from_docker.username, from_docker.chunk_size) == ("d", 4194304)
    assert config.lookup(Reference.parse("q.io/x")).chunk_size == 262144
    assert config.lookup(Reference.parse("other.io/x")).chunk_size is None


def test_auth_file_wins_over_docker_config(tmp_path):
    docker_dir = tmp_path / "docker"
    write_config(docker_dir, {"auths": {"reg.local": {"username": "d", "password": "dp"}}})
    path = write_data(tmp_path, {"reg.local": {"username": "f", "password": "fp"}}, "json", "auth")
    config = load_auth_file(path, env={"DOCKER_CONFIG": str(docker_dir)})
    assert config.lookup(Reference.parse("reg.local/a")).username == "f"
    assert config.lookup(Reference.parse("other.local/a")).username is None


def test_no_auth_file_uses_docker_config_only(tmp_path):
    docker_dir = tmp_path / "docker"
    write_config(docker_dir, {"auths": {"reg.local": {"username": "d", "password": "dp"}}})
    config = load_auth_file(None, env={"DOCKER_CONFIG": str(docker_dir)})
    assert config.lookup(Reference.parse("reg.local/a")).username == "d"
    assert (
        load_auth_file(None, use_docker_config=False).lookup(Reference.parse("reg.local/a"))
        == RegistryAccess()
    )


def test_yaml_merge_keys_may_override(tmp_path, no_docker):
    path = write_raw(
        tmp_path,
        "a.io: &common {username: u, password: p, insecure: true}\n"
        "b.io:\n  <<: *common\n  insecure: false\n",
    )
    config = load(path, no_docker)
    access = config.lookup(Reference.parse("b.io/x"))
    assert (access.username, secret(access.password), access.insecure) == ("u", "p", False)


# ---------------------------------------------------------------- longest prefix

NESTED_KEYS = ["reg.io", "reg.io/a", "reg.io/a/b", "reg.io/a/b/c"]
DECOYS = ["reg.io/a/bc", "reg.io/ab", "other.io", "reg.io:5000/a/b/c"]
EXPECTED_WINNER = {
    "reg.io/a/b/c/d:1": "reg.io/a/b/c",
    "reg.io/a/b/c": "reg.io/a/b/c",
    "reg.io/a/b/x": "reg.io/a/b",
    "reg.io/a/bc/x": "reg.io/a/bc",
    "reg.io/a/x": "reg.io/a",
    "reg.io/ab": "reg.io/ab",
    "reg.io/abc": "reg.io",
    "reg.io:5000/a/b/c": "reg.io:5000/a/b/c",
    "reg.io:5000/a/b": None,
    "other.io/z": "other.io",
    "third.io/z": None,
}


def _entries(keys):
    return {key: {"username": key, "password": "pw"} for key in keys}


def _assert_winners(config: AuthConfig) -> None:
    for image, winner in EXPECTED_WINNER.items():
        assert config.match(Reference.parse(image)) == winner, image
        assert config.lookup(Reference.parse(image)).username == winner, image


@pytest.mark.parametrize("order", list(itertools.permutations(NESTED_KEYS + DECOYS[:1])))
def test_longest_prefix_every_permutation(order):
    keys = [*order, *DECOYS[1:]]
    config = parse_auth_section(_entries(keys), file="auth.yaml", env={})
    _assert_winners(config)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("fmt", FORMATS)
def test_longest_prefix_shuffled_files(tmp_path, no_docker, fmt, seed):
    keys = NESTED_KEYS + DECOYS
    random.Random(seed).shuffle(keys)
    _assert_winners(load(write_data(tmp_path, _entries(keys), fmt, "auth"), no_docker))


@pytest.mark.parametrize(
    ("key", "normalised"),
    [
        ("quay.io", "quay.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io/team", "docker.io/team"),
        ("Docker.IO/library/nginx", "docker.io/library/nginx"),
        ("library/nginx", "docker.io/library/nginx"),
        ("nginx", "docker.io/nginx"),
        ("localhost/a/", "localhost/a"),
        ("LOCALHOST:5000", "localhost:5000"),
        ("[::1]:5000/x", "[::1]:5000/x"),
    ],
)
def test_normalise_auth_key(key, normalised):
    assert normalise_auth_key(key) == normalised


# ------------------------------------------------------------------- malformed

# (id, file name, content, key the message must name, fragment of the problem)
MALFORMED = [
    ("insecure-string", "a.yaml", 'quay.io:\n  insecure: "yes"\n', "quay.io", "insecure"),
    ("insecure-number", "a.json", '{"quay.io": {"insecure": 1}}', "quay.io", "true or false"),
    ("unknown-field", "a.yaml", "quay.io:\n  passwd: x\n", "quay.io", "'passwd'"),
    ("unknown-field-json", "a.json", '{"q.io": {"user": "x"}}', "q.io", "'user'"),
    ("entry-string", "a.yaml", "quay.io: letmein\n", "quay.io", "must be a mapping"),
    ("entry-null", "a.yaml", "quay.io:\n", "quay.io", "must be a mapping"),
    ("entry-list", "a.json", '{"quay.io": ["u", "p"]}', "quay.io", "must be a mapping"),
    ("username-number", "a.yaml", "quay.io:\n  username: 42\n", "quay.io", "must be a string"),
    ("password-number", "a.json", '{"q.io": {"username": "u", "password": 7}}', "q.io", "string"),
    ("password-map", "a.yaml", "q.io:\n  username: u\n  password: {a: b}\n", "q.io", "password"),
    ("token-list", "a.yaml", "q.io:\n  token: [a]\n", "q.io", "token"),
    (
        "password-and-token",
        "a.yaml",
        "q.io: {username: u, password: p, token: t}",
        "q.io",
        "not both",
    ),
    ("password-no-user", "a.yaml", "q.io: {password: p}", "q.io", "needs a 'username'"),
    ("uppercase-path", "a.yaml", "quay.io/CoreOS: {insecure: true}", "quay.io/CoreOS", "lowercase"),
    ("scheme-key", "a.json", '{"https://quay.io": {}}', "https://quay.io", "invalid auth key"),
    ("space-key", "a.yaml", '"quay .io": {}', "quay .io", "invalid auth key"),
    ("empty-key", "a.json", '{"": {}}', "", "invalid auth key"),
    ("bad-host", "a.yaml", "'-bad-.io': {}", "-bad-.io", "invalid auth key"),
    ("duplicate-yaml", "a.yml", "q.io: {}\nq.io: {insecure: true}\n", "q.io", "duplicate key"),
    ("duplicate-json", "a.json", '{"q.io": {}, "q.io": {}}', "q.io", "duplicate key"),
    ("duplicate-field", "a.yaml", "q.io:\n  username: a\n  username: b\n", "username", "duplicate"),
    ("same-registry", "a.yaml", "docker.io: {}\nindex.docker.io: {}\n", "index.docker.io", "same"),
    ("ca-missing", "a.yaml", "q.io: {ca_file: nope.pem}", "q.io", "does not exist"),
    ("ca-number", "a.yaml", "q.io: {ca_file: 5}", "q.io", "ca_file"),
    ("non-string-key", "a.yaml", "123: {}\n", "123", "keys must be strings"),
    ("chunk-string", "a.yaml", 'q.io: {chunk_size: "4MiB"}', "q.io", "chunk_size"),
    ("chunk-float", "a.json", '{"q.io": {"chunk_size": 4194304.0}}', "q.io", "chunk_size"),
    ("chunk-bool", "a.yaml", "q.io: {chunk_size: true}", "q.io", "chunk_size"),
    ("chunk-zero", "a.yaml", "q.io: {chunk_size: 0}", "q.io", "from 262144"),
    ("chunk-negative", "a.json", '{"q.io": {"chunk_size": -1}}', "q.io", "out of range"),
    ("chunk-too-big", "a.yaml", "q.io: {chunk_size: 2147483648}", "q.io", "1 GiB"),
    ("bool-key", "a.yaml", "true: {}\n", "True", "keys must be strings"),
]


@pytest.mark.parametrize(
    ("name", "content", "key", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
def test_malformed_auth_names_file_and_key(tmp_path, no_docker, name, content, key, fragment):
    path = write_raw(tmp_path, content, name)
    with pytest.raises(ConfigError) as info:
        load(path, no_docker)
    message = str(info.value)
    assert str(path) in message
    assert f"key {key!r}" in message
    assert (info.value.file, info.value.key) == (str(path), key)
    assert fragment in message


FILE_LEVEL = [
    ("empty", "a.yaml", "", "empty"),
    ("whitespace", "a.json", "  \n", "empty"),
    ("comments-only", "a.yaml", "# nothing\n", "empty"),
    ("top-list", "a.yaml", "- quay.io\n", "mapping"),
    ("top-string", "a.json", '"quay.io"', "mapping"),
    ("json-null", "a.json", "null", "empty"),
    ("yaml-syntax", "a.yaml", "quay.io: {username: [\n", "invalid YAML"),
    ("json-syntax", "a.json", '{"quay.io": {"username": "u",}}', "invalid JSON"),
    ("suffix", "auth.txt", "quay.io: {}\n", "unsupported file extension"),
    ("no-suffix", "auth", "quay.io: {}\n", "unsupported file extension"),
    ("two-documents", "a.yaml", "a.io: {}\n---\nb.io: {}\n", "invalid YAML"),
]


@pytest.mark.parametrize(
    ("name", "content", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in FILE_LEVEL]
)
def test_malformed_auth_file_level(tmp_path, no_docker, name, content, fragment):
    path = write_raw(tmp_path, content, name)
    with pytest.raises(ConfigError) as info:
        load(path, no_docker)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_unreadable_and_binary_files(tmp_path, no_docker):
    with pytest.raises(ConfigError, match="file not found") as info:
        load(tmp_path / "missing.yaml", no_docker)
    assert "missing.yaml" in str(info.value)
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="directory"):
        load(tmp_path / "dir.yaml", no_docker)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b'{"\xff\xfe": 1}')
    with pytest.raises(ConfigError, match="UTF-8"):
        load(binary, no_docker)


# --------------------------------------------------------------------- secrets

LEAKY_FILES = [
    ("insecure-is-secret", "a.yaml", f'q.io:\n  insecure: "{SECRET}"\n'),
    ("unknown-field-secret", "a.yaml", f"q.io:\n  username: u\n  passwd: {SECRET}\n"),
    ("secret-next-to-type-error", "a.json",
     f'{{"q.io": {{"username": "u", "password": "{SECRET}", "insecure": "no"}}}}'),
    ("password-and-token", "a.yaml", f"q.io: {{username: u, password: {SECRET}, token: {SECRET}}}"),
    ("password-list", "a.yaml", f"q.io:\n  username: u\n  password: [{SECRET}]\n"),
    ("password-map", "a.json", f'{{"q.io": {{"username": "u", "password": {{"{SECRET}": 1}}}}}}'),
    ("yaml-unterminated", "a.yaml", f'q.io:\n  username: u\n  password: "{SECRET}\n'),
    ("yaml-colon", "a.yaml", f"q.io:\n  username: u\n  password: {SECRET}: x\n"),
    ("yaml-tab", "a.yaml", f"q.io:\n  username: u\n  password: {SECRET}\n\t  insecure: true\n"),
    ("json-syntax-after-secret", "a.json",
     f'{{"q.io": {{"username": "u", "password": "{SECRET}" "insecure": true}}}}'),
    ("duplicate-password", "a.yaml",
     f"q.io:\n  username: u\n  password: {SECRET}\n  password: x\n"),
    ("bad-key-next-to-secret", "a.yaml", f"Bad.io/UPPER:\n  username: u\n  password: {SECRET}\n"),
    ("ca-missing-next-to-secret", "a.yaml",
     f"q.io:\n  username: u\n  password: {SECRET}\n  ca_file: nope.pem\n"),
    ("env-expanded-secret", "a.yaml", "q.io:\n  username: u\n  password: $PW\n  insecure: maybe\n"),
]  # fmt: skip


def _assert_no_secret(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert SECRET not in text
    assert SECRET not in repr(exc)
    assert SECRET not in str(exc)


@pytest.mark.parametrize(("name", "content"), [pytest.param(*c[1:], id=c[0]) for c in LEAKY_FILES])
def test_secret_never_in_error(tmp_path, no_docker, name, content):
    path = write_raw(tmp_path, content, name)
    with pytest.raises(ConfigError) as info:
        load(path, no_docker, env={"PW": SECRET})
    assert str(path) in str(info.value)
    _assert_no_secret(info.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_secret_never_in_repr_or_str(tmp_path, no_docker, fmt):
    data = {
        "q.io": {"username": "u", "password": SECRET},
        "t.io": {"token": SECRET},
        "e.io": {"username": "u", "password": "${PW}"},
    }
    config = load(write_data(tmp_path, data, fmt, "auth"), no_docker, env={"PW": SECRET})
    assert len(config.entries) == 3
    texts = [repr(config), str(config)]
    for key, entry in config.entries.items():
        access = config.lookup(Reference.parse(f"{key}/x"))
        assert access.secrets() == [SECRET]
        texts += [repr(entry), str(entry), repr(access), str(access), access.model_dump_json()]
        texts.append(json.dumps(entry.model_dump(mode="json")))
    for text in texts:
        assert SECRET not in text
