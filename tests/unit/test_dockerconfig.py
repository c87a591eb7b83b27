"""docker config.json fallback: `auths` entries and credential helpers (real executables)."""

from __future__ import annotations

import base64
import json
import os
import sys
import traceback
from pathlib import Path

import pytest

from syncer_core.config import DockerConfig, load_auth_file, run_credential_helper
from syncer_core.config.dockerconfig import docker_config_path, registry_host
from syncer_core.errors import ConfigError
from syncer_core.reference import Reference
from tests.unit.helpers import write_config

SECRET = "helper-S3CRET-value"

HELPER = """#!{python}
import json, sys, time
from pathlib import Path
server = sys.stdin.read().strip()
here = Path(__file__).parent
with open(here / "calls.log", "a") as log:
    log.write(server + "\\n")
answers = json.loads((here / "answers.json").read_text())
answer = answers.get(server, "notfound")
if answer == "notfound":
    print("credentials not found in native keychain")
    sys.exit(1)
if answer == "fail":
    print("{secret}")
    print("boom {secret}", file=sys.stderr)
    sys.exit(2)
if answer == "garbage":
    print("not json {secret}")
    sys.exit(0)
if answer == "slow":
    time.sleep(10)
print(json.dumps(answer))
"""

ANSWERS = {
    "helper.example.com": {"ServerURL": "helper.example.com", "Username": "hu", "Secret": "hs"},
    "https://index.docker.io/v1/": {"Username": "hubuser", "Secret": "hubpass"},
    "token.example.com": {"Username": "<token>", "Secret": "idtok"},
    "empty.example.com": {"Username": "", "Secret": ""},
    "nostr.example.com": {"Username": 5, "Secret": None},
    "broken.example.com": "fail",
    "garbage.example.com": "garbage",
    "slow.example.com": "slow",
}


class Helper:
    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir

    @property
    def calls(self) -> list[str]:
        log = self.bin_dir / "calls.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Helper:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-test"
    script.write_text(HELPER.format(python=sys.executable, secret=SECRET), encoding="utf-8")
    script.chmod(0o755)
    (bin_dir / "answers.json").write_text(json.dumps(ANSWERS), encoding="utf-8")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return Helper(bin_dir)


@pytest.fixture
def docker_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "dockercfg"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def value(secret):
    return secret.get_secret_value() if secret is not None else None


# ----------------------------------------------------------------------- auths

AUTHS_CASES = [
    pytest.param(
        {"reg.example.com": {"auth": b64("alice:pa:ss")}},
        "reg.example.com/a/b",
        {"username": "alice", "password": "pa:ss"},
        id="base64-auth",
    ),
    pytest.param(
        {"https://index.docker.io/v1/": {"auth": b64("hub:hubpw")}},
        "nginx:latest",
        {"username": "hub", "password": "hubpw"},
        id="docker-hub-url-key",
    ),
    pytest.param(
        {"http://reg.local:5000/v2/": {"username": "u", "password": "p"}},
        "reg.local:5000/x",
        {"username": "u", "password": "p"},
        id="url-key-with-port-and-plain-fields",
    ),
    pytest.param(
        {"reg.example.com": {"auth": b64("bob:"), "identitytoken": "refresh"}},
        "reg.example.com/x",
        {"username": "bob", "identity_token": "refresh", "password": None},
        id="identity-token",
    ),
    pytest.param(
        {"reg.example.com": {"registrytoken": "bearer"}},
        "reg.example.com/x",
        {"token": "bearer", "username": None},
        id="registry-token",
    ),
    pytest.param(
        {"reg.example.com": {"auth": "", "email": "x@y"}},
        "reg.example.com/x",
        None,
        id="placeholder-entry-is-anonymous",
    ),
    pytest.param(
        {"other.example.com": {"auth": b64("a:b")}},
        "reg.example.com/x",
        None,
        id="other-registry",
    ),
    pytest.param(
        {
            "https://reg.example.com": {"auth": b64("url:1")},
            "reg.example.com": {"auth": b64("x:2")},
        },
        "reg.example.com/x",
        {"username": "x", "password": "2"},
        id="exact-host-key-wins-over-url-key",
    ),
]


def _check(access, expected):
    if expected is None:
        assert access is None or not access.secrets()
        return
    for field, wanted in expected.items():
        actual = getattr(access, field)
        if field != "username":
            actual = value(actual)
        assert actual == wanted, field


@pytest.mark.parametrize(("auths", "image", "expected"), AUTHS_CASES)
def test_auths_entries(docker_dir, auths, image, expected):
    write_config(docker_dir, {"auths": auths, "psFormat": "table"})
    config = DockerConfig.from_env()
    _check(config.credentials(Reference.parse(image).registry), expected)


@pytest.mark.parametrize(("auths", "image", "expected"), AUTHS_CASES)
def test_auths_through_auth_file_lookup(tmp_path, docker_dir, auths, image, expected):
    write_config(docker_dir, {"auths": auths})
    auth_file = tmp_path / "auth.yaml"
    auth_file.write_text("unrelated.example.com: {insecure: true}\n", encoding="utf-8")
    access = load_auth_file(auth_file).lookup(Reference.parse(image))
    _check(access if access.secrets() else None, expected)


@pytest.mark.parametrize(
    ("auth", "fragment"),
    [("not base64!!", "not base64"), (b64("no-colon"), "username:password")],
)
def test_bad_base64_names_file_and_key_without_secret(docker_dir, auth, fragment):
    path = write_config(docker_dir, {"auths": {"reg.example.com": {"auth": auth}}})
    with pytest.raises(ConfigError) as info:
        DockerConfig.from_env().credentials("reg.example.com")
    assert (info.value.file, info.value.key) == (str(path), "reg.example.com")
    assert fragment in str(info.value)
    assert auth not in str(info.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ('{"auths": []}', "auths"),
        ('{"auths": {"r.io": {"username": 5}}}', "username"),
        ('{"credHelpers": {"r.io": 5}}', "credHelpers"),
        ("[]", "mapping"),
    ],
)
def test_malformed_docker_config_fails_at_lookup_not_load(tmp_path, docker_dir, content, fragment):
    path = docker_dir / "config.json"
    path.write_text(content, encoding="utf-8")
    auth_file = tmp_path / "auth.json"
    auth_file.write_text('{"r.io": {"insecure": true}}', encoding="utf-8")
    config = load_auth_file(auth_file)  # no error yet: config.json is read lazily
    with pytest.raises(ConfigError) as info:
        config.lookup(Reference.parse("r.io/x"))
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("content", [None, "", "  \n", "{}"])
def test_missing_or_empty_docker_config_is_anonymous(docker_dir, content):
    if content is not None:
        (docker_dir / "config.json").write_text(content, encoding="utf-8")
    assert DockerConfig.from_env().credentials("docker.io") is None


def test_docker_config_path_discovery(tmp_path):
    assert docker_config_path({"DOCKER_CONFIG": "/x"}) == Path("/x/config.json")
    assert docker_config_path({"HOME": str(tmp_path)}) == tmp_path / ".docker" / "config.json"
    assert docker_config_path({"DOCKER_CONFIG": "", "HOME": "/h"}) == Path("/h/.docker/config.json")


def test_home_docker_config_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".docker").mkdir()
    write_config(tmp_path / ".docker", {"auths": {"r.io": {"auth": b64("h:p")}}})
    assert load_auth_file(None).lookup(Reference.parse("r.io/a")).username == "h"


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("HTTPS://Quay.IO/v2/", "quay.io"),
        ("http://localhost:5000", "localhost:5000"),
    ],
)
def test_registry_host(key, host):
    assert registry_host(key) == host


# -------------------------------------------------------------- credential helpers


def test_cred_helper_resolves_lazily_and_once(tmp_path, docker_dir, helper):
    write_config(docker_dir, {"credHelpers": {"helper.example.com": "test"}})
    auth_file = tmp_path / "auth.yaml"
    auth_file.write_text("helper.example.com/team: {insecure: true}\n", encoding="utf-8")
    config = load_auth_file(auth_file)
    assert helper.calls == []  # not run at load time
    access = config.lookup(Reference.parse("helper.example.com/team/app:1"))
    assert (access.username, value(access.password), access.insecure) == ("hu", "hs", True)
    config.lookup(Reference.parse("helper.example.com/other/app"))
    assert helper.calls == ["helper.example.com"]


def test_creds_store_for_docker_hub_uses_index_url(docker_dir, helper):
    write_config(docker_dir, {"credsStore": "test", "auths": {"https://index.docker.io/v1/": {}}})
    access = load_auth_file(None).lookup(Reference.parse("library/nginx"))
    assert (access.username, value(access.password)) == ("hubuser", "hubpass")
    assert helper.calls == ["https://index.docker.io/v1/"]


def test_helper_token_username_means_identity_token(docker_dir, helper):
    write_config(docker_dir, {"credHelpers": {"token.example.com": "test"}})
    access = DockerConfig.from_env().credentials("token.example.com")
    assert access is not None
    assert (access.username, value(access.identity_token)) == (None, "idtok")


@pytest.mark.parametrize("registry", ["missing.example.com", "empty.example.com"])
def test_helper_without_credentials_is_anonymous(docker_dir, helper, registry):
    write_config(docker_dir, {"credsStore": "test"})
    access = load_auth_file(None).lookup(Reference.parse(f"{registry}/x"))
    assert access.secrets() == []
    assert helper.calls == [registry]


def test_precedence_helper_then_auths_then_store(docker_dir, helper):
    write_config(
        docker_dir,
        {
            "credHelpers": {"helper.example.com": "test"},
            "credsStore": "test",
            "auths": {
                "helper.example.com": {"auth": b64("file:user")},
                "plain.example.com": {"auth": b64("file:user")},
            },
        },
    )
    config = DockerConfig.from_env()
    helper_access = config.credentials("helper.example.com")
    assert helper_access is not None and helper_access.username == "hu"
    file_access = config.credentials("plain.example.com")
    assert file_access is not None and file_access.username == "file"
    assert helper.calls == ["helper.example.com"]
    store_access = config.credentials("docker.io")
    assert store_access is not None and store_access.username == "hubuser"


def test_auth_file_credentials_skip_helpers(tmp_path, docker_dir, helper):
    write_config(docker_dir, {"credsStore": "test"})
    auth_file = tmp_path / "auth.yaml"
    auth_file.write_text("helper.example.com: {username: a, password: b}\n", encoding="utf-8")
    access = load_auth_file(auth_file).lookup(Reference.parse("helper.example.com/x"))
    assert access.username == "a"
    assert helper.calls == []


@pytest.mark.parametrize(
    ("registry", "fragment"),
    [
        ("broken.example.com", "failed for registry broken.example.com (exit status 2)"),
        ("garbage.example.com", "not JSON"),
        ("nostr.example.com", "must be strings"),
    ],
)
def test_failing_helper_names_helper_and_registry_not_secret(
    docker_dir, helper, registry, fragment
):
    write_config(docker_dir, {"credHelpers": {registry: "test"}})
    config = load_auth_file(None)
    with pytest.raises(ConfigError) as info:
        config.lookup(Reference.parse(f"{registry}/x"))
    message = str(info.value)
    assert "docker-credential-test" in message
    assert registry in message
    assert fragment in message
    assert SECRET not in "".join(traceback.format_exception(info.value))
    with pytest.raises(ConfigError):  # the failure is cached, not re-run
        config.lookup(Reference.parse(f"{registry}/y"))
    assert helper.calls == [registry]


def test_helper_timeout(helper):
    with pytest.raises(ConfigError, match=r"timed out after 0.5s for registry slow.example.com"):
        run_credential_helper("test", "slow.example.com", env=os.environ, timeout=0.5)


def test_missing_helper(docker_dir, helper):
    write_config(docker_dir, {"credHelpers": {"r.io": "absent"}})
    with pytest.raises(ConfigError, match=r"docker-credential-absent for registry r\.io is not on"):
        DockerConfig.from_env().credentials("r.io")


@pytest.mark.parametrize("name", ["../evil", "a b", "", "-x"])
def test_invalid_helper_name(name):
    with pytest.raises(ConfigError, match="invalid credential helper name"):
        run_credential_helper(name, "r.io", env={"PATH": ""})


def test_repr_hides_nothing_secret(docker_dir):
    write_config(docker_dir, {"auths": {"r.io": {"auth": b64(f"u:{SECRET}")}}})
    config = DockerConfig.from_env()
    access = config.credentials("r.io")
    assert access is not None and value(access.password) == SECRET
    assert SECRET not in repr(config) + repr(access) + str(access)
