"""Bad input is refused before any network traffic: exit 2, one clear message, zero connections.

Every images, auth and config file of the corpus names a fault proxy as its
registry, so a single connection from the CLI would show in the proxy's
counters. Each case states the fragments the one error line must contain:
the file, key or flag at fault, and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.conftest import CliRunner, ProxyFactory
from tests.support.zoo import FaultProxy

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@pytest.fixture(scope="module")
def trap() -> Iterator[FaultProxy]:
    """A proxy nothing may connect to (its upstream does not even exist)."""
    with FaultProxy("127.0.0.1:9") as proxy:
        yield proxy


@dataclass(frozen=True)
class Case:
    """One bad invocation.

    Attributes:
        images / auth / config: file contents (`{P}` is the proxy's host);
            None leaves the file out. `images` defaults to a valid file.
        names: file names to use, by role (e.g. `{"images": "images.json"}`).
        flags: extra arguments; `{tmp}` is the test's directory.
        expect: fragments the error line must contain.
    """

    images: str | bytes | None = "{P}/team/app:v1: {P}/mirror/app\n"
    auth: str | bytes | None = "{P}:\n  insecure: true\n"
    config: str | bytes | None = None
    names: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()


def _images(entry: str) -> str:
    return entry + "\n"


CASES: dict[str, Case] = {
    # -- files that cannot be read or decoded -----------------------------------------------------
    "images-file-missing": Case(
        images=None, flags=("--images", "{tmp}/nowhere.yaml"), expect=("nowhere.yaml", "not found")
    ),
    "images-file-is-a-directory": Case(
        images=None, flags=("--images", "{tmp}/adir.yaml"), expect=("adir.yaml", "directory")
    ),
    "auth-file-missing": Case(
        auth=None, flags=("--auth", "{tmp}/no-auth.yaml"), expect=("no-auth.yaml", "not found")
    ),
    "auth-file-is-a-directory": Case(
        auth=None, flags=("--auth", "{tmp}/adir.yaml"), expect=("adir.yaml", "directory")
    ),
    "images-empty": Case(images="", expect=("images.yaml", "empty")),
    "images-only-comments": Case(images="# nothing here\n", expect=("images.yaml", "empty")),
    "images-broken-yaml": Case(
        images="{P}/team/app:v1: [unclosed\n", expect=("images.yaml", "invalid YAML", "line")
    ),
    "images-broken-json": Case(
        images='{"{P}/team/app:v1": ',
        names={"images": "images.json"},
        expect=("images.json", "invalid JSON"),
    ),
    "images-duplicate-yaml-key": Case(
        images="{P}/team/app:v1: {P}/a\n{P}/team/app:v1: {P}/b\n",
        expect=("images.yaml", "duplicate key", "team/app:v1"),
    ),
    "images-duplicate-json-key": Case(
        images='{"{P}/team/app:v1": "{P}/a", "{P}/team/app:v1": "{P}/b"}',
        names={"images": "images.json"},
        expect=("images.json", "duplicate key"),
    ),
    "images-top-level-list": Case(images="- a\n- b\n", expect=("images.yaml", "mapping")),
    "images-top-level-scalar": Case(images="just words\n", expect=("images.yaml", "mapping")),
    "images-unsupported-extension": Case(
        names={"images": "images.txt"}, expect=("images.txt", "extension")
    ),
    "images-not-utf8": Case(
        images=b"\xff\xfe\x00garbage: \xc3\x28\n", expect=("images.yaml", "UTF-8")
    ),
    "images-non-string-key": Case(images="123: {P}/x\n", expect=("images.yaml", "123", "string")),
    # -- wrong types and bad references in the images file ----------------------------------------
    "destination-is-a-number": Case(
        images=_images("{P}/team/app:v1: 42"), expect=("images.yaml", "team/app:v1", "string")
    ),
    "destination-list-with-a-number": Case(
        images=_images("{P}/team/app:v1: [{P}/a, 7]"), expect=("team/app:v1", "destination[1]")
    ),
    "destination-empty-list": Case(
        images=_images("{P}/team/app:v1: []"), expect=("team/app:v1", "list is empty")
    ),
    "destination-mapping-of-unknown-fields": Case(
        images=_images("{P}/team/app:v1: {a: b}"), expect=("team/app:v1", "unknown field 'a'")
    ),
    "source-uppercase-repository": Case(
        images=_images("{P}/Team/App:v1: {P}/mirror/app"), expect=("Team/App:v1", "invalid")
    ),
    "source-bad-digest": Case(
        images=_images("{P}/team/app@sha256:xyz: {P}/mirror/app"), expect=("team/app@sha256:xyz",)
    ),
    "source-tag-list-stray-comma": Case(
        images=_images("'{P}/team/app:a,,b': {P}/mirror/app"), expect=("team/app:a,,b", "empty")
    ),
    "source-tag-list-invalid-tag": Case(
        images=_images("'{P}/team/app:a,b$': {P}/mirror/app"), expect=("b$", "neither")
    ),
    "destination-tag-and-digest": Case(
        images=_images(f"{{P}}/team/app:v1: {{P}}/mirror/app:v1@{DIGEST_A}"),
        expect=("team/app:v1", "both a tag and a digest"),
    ),
    "destination-same-as-source": Case(
        images=_images("{P}/team/app: {P}/team/app"), expect=("team/app", "source repository")
    ),
    "destination-unset-variable": Case(
        images=_images("{P}/team/app:v1: ${IMAGE_SYNCER_TEST_UNSET}"),
        expect=("team/app:v1", "IMAGE_SYNCER_TEST_UNSET"),
    ),
    "destination-empty-without-default-registry": Case(
        images=_images("{P}/team/app:v1: ''"), expect=("team/app:v1", "default registry")
    ),
    # -- regexes ----------------------------------------------------------------------------------
    "source-regex-invalid": Case(
        images=_images("'{P}/team/app:/v[1/': {P}/mirror/app"), expect=("team/app", "regex")
    ),
    "source-regex-unclosed": Case(
        images=_images("'{P}/team/app:/^v1': {P}/mirror/app"), expect=("team/app", "closing '/'")
    ),
    "destination-regex": Case(
        images=_images("{P}/team/app:v1: '{P}/mirror/app:/v1/'"),
        expect=("team/app:v1", "only allowed in a source"),
    ),
    "source-regex-too-long": Case(
        # JSON: YAML does not allow implicit keys longer than 1024 characters.
        images='{"{P}/team/app:/' + "a" * 1001 + '/": "{P}/mirror/app"}',
        names={"images": "images.json"},
        expect=("team/app", "longer than"),
    ),
    # -- count and digest mismatches --------------------------------------------------------------
    "tag-count-mismatch": Case(
        images=_images("'{P}/team/app:a,b': {P}/mirror/app:x"),
        expect=("team/app:a,b", "names 1", "names 2"),
    ),
    "tag-count-mismatch-reverse": Case(
        images=_images("{P}/team/app:a: '{P}/mirror/app:x,y,z'"), expect=("names 3", "names 1")
    ),
    "digest-mismatch": Case(
        images=_images(f"{{P}}/team/app@{DIGEST_A}: {{P}}/mirror/app@{DIGEST_B}"),
        expect=("differs from source digest", DIGEST_B),
    ),
    # -- the auth file ----------------------------------------------------------------------------
    "auth-broken-yaml": Case(auth="{P}: {username: u, password: [\n", expect=("auth.yaml", "YAML")),
    "auth-entry-not-a-mapping": Case(
        auth="{P}: yes-please\n", expect=("auth.yaml", "{P}", "mapping")
    ),
    "auth-unknown-field": Case(
        auth="{P}:\n  user: someone\n", expect=("auth.yaml", "{P}", "unknown field 'user'")
    ),
    "auth-insecure-not-a-boolean": Case(
        auth="{P}:\n  insecure: 'yes'\n", expect=("auth.yaml", "insecure", "true or false")
    ),
    "auth-password-is-a-number": Case(
        auth="{P}:\n  username: u\n  password: 12345\n", expect=("auth.yaml", "password", "string")
    ),
    "auth-password-without-username": Case(
        auth="{P}:\n  password: hunter2hunter2\n", expect=("auth.yaml", "{P}", "username")
    ),
    "auth-password-and-token": Case(
        auth="{P}:\n  username: u\n  password: p1p1p1\n  token: t1t1t1\n",
        expect=("auth.yaml", "token"),
    ),
    "auth-ca-file-missing": Case(
        auth="{P}:\n  ca_file: no-such-ca.pem\n", expect=("auth.yaml", "no-such-ca.pem")
    ),
    "auth-ca-file-is-a-directory": Case(
        auth="{P}:\n  ca_file: adir.yaml\n", expect=("auth.yaml", "adir.yaml", "not a file")
    ),
    "auth-invalid-key": Case(
        auth="'not a registry!': {}\n", expect=("auth.yaml", "not a registry!")
    ),
    "auth-same-registry-twice": Case(
        auth="docker.io/team: {}\nindex.docker.io/team: {}\n",
        expect=("auth.yaml", "same registry/namespace"),
    ),
    # -- the legacy --config file -----------------------------------------------------------------
    "config-unknown-section": Case(
        images=None,
        auth=None,
        config="auth: {}\nimage:\n  '{P}/team/app:v1': '{P}/mirror/app'\n",
        expect=("config.yaml", "image", "unknown section"),
    ),
    "config-images-is-a-list": Case(
        images=None, auth=None, config="images: [a, b]\n", expect=("config.yaml", "images")
    ),
    "config-bad-rule": Case(
        images=None,
        auth=None,
        config="images:\n  '{P}/team/app:a,b': '{P}/mirror/app:x'\n",
        expect=("config.yaml", "team/app:a,b", "names 1"),
    ),
    # -- flags ------------------------------------------------------------------------------------
    "proc-zero": Case(flags=("--proc", "0"), expect=("--proc", "at least 1")),
    "proc-negative": Case(flags=("--proc", "-3"), expect=("--proc", "-3")),
    "proc-not-a-number": Case(flags=("--proc", "many"), expect=("--proc", "many")),
    "retries-negative": Case(flags=("--retries", "-1"), expect=("--retries", "0 or more")),
    "rule-concurrency-zero": Case(
        flags=("--rule-concurrency", "0"), expect=("--rule-concurrency", "at least 1")
    ),
    "os-with-a-slash": Case(flags=("--os", "linux/amd64"), expect=("--os", "linux/amd64")),
    "arch-empty-variant": Case(flags=("--arch", "arm64:"), expect=("--arch", "arm64:")),
    "arch-with-a-space": Case(flags=("--arch", "amd64, x 86"), expect=("--arch", "x 86")),
    "shards-without-dispatch-to": Case(
        flags=("--shards", "3"), expect=("--shards", "--dispatch-to")
    ),
    "shards-negative": Case(flags=("--shards", "-1"), expect=("--shards", "0 or more")),
    "registry-limit-negative": Case(
        flags=("--registry-limit", "-2"), expect=("--registry-limit", "0 or more")
    ),
    "unknown-flag": Case(flags=("--paralel", "3"), expect=("unrecognized arguments", "--paralel")),
    "output-format-unknown": Case(
        flags=("--output-images-format", "xml"), expect=("--output-images-format", "xml")
    ),
    "no-images-at-all": Case(images=None, expect=("--images",)),
    "report-in-missing-directory": Case(
        flags=("--report", "{tmp}/missing/report.json"), expect=("--report", "does not exist")
    ),
    "log-in-missing-directory": Case(
        flags=("--log", "{tmp}/missing/run.log"), expect=("--log", "does not exist")
    ),
    "success-list-in-missing-directory": Case(
        flags=("--output-success-images", "{tmp}/missing/ok.yaml"),
        expect=("--output-success-images",),
    ),
    "failed-list-in-missing-directory": Case(
        flags=("--output-failed-images", "{tmp}/missing/failed.yaml"),
        expect=("--output-failed-images",),
    ),
}


def _write(path: Path, content: str | bytes, host: str) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content.replace(b"{P}", host.encode()))
    else:
        path.write_text(content.replace("{P}", host))
    return path


def _argv(case: Case, tmp: Path, host: str) -> list[str]:
    (tmp / "adir.yaml").mkdir(exist_ok=True)
    argv: list[str] = []
    for role in ("images", "auth", "config"):
        content = getattr(case, role)
        if content is not None:
            name = case.names.get(role, f"{role}.yaml")
            argv += [f"--{role}", str(_write(tmp / name, content, host))]
    argv += [flag.replace("{tmp}", str(tmp)) for flag in case.flags]
    return argv


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, f"expected exactly one error line, got:\n{stderr}"
    return lines[0]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_clear_message_and_no_connection(
    name: str,
    config_cli: CliRunner,
    trap: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[name]
    monkeypatch.delenv("IMAGE_SYNCER_TEST_UNSET", raising=False)
    before = trap.snapshot().connections

    run = config_cli(_argv(case, tmp_path, trap.host), report=False)

    assert run.code == 2, run.describe()
    line = _error_line(run.stderr)
    for fragment in case.expect:
        assert fragment.replace("{P}", trap.host) in line, f"{fragment!r} not in {line!r}"
    assert run.stdout == ""
    assert trap.snapshot().connections == before == 0


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_broken_auth_yaml_does_not_echo_the_password(
    config_cli: CliRunner, trap: FaultProxy, tmp_path: Path
) -> None:
    secret = "s3cr3t-Pa55word-in-a-broken-line"
    case = Case(auth=f"{{P}}:\n  username: u\n  password: '{secret}\n  insecure: [\n")
    run = config_cli(_argv(case, tmp_path, trap.host), report=False)
    assert run.code == 2, run.describe()
    assert "auth.yaml" in _error_line(run.stderr)
    assert secret not in run.stderr + run.stdout


# -- input that conflicts with itself: refused before anything is written ------------------------


@pytest.mark.parametrize("flag", ["--report", "--log", "--output-failed-images"])
def test_an_output_file_that_is_an_input_file_is_refused(
    flag: str, cli: CliRunner, proxies: ProxyFactory, tmp_path: Path
) -> None:
    trap = proxies("127.0.0.1:9")  # its own: if the run starts, it connects
    argv = _argv(Case(), tmp_path, trap.host)
    images = argv[argv.index("--images") + 1]
    before = Path(images).read_text()
    # --dry-run: if the conflict slips through, nothing is copied anyway.
    run = cli([*argv, flag, images, "--dry-run"], report=False)
    assert Path(images).read_text() == before, "the images file was overwritten"
    assert run.code == 2, run.describe()
    assert flag in _error_line(run.stderr)
    assert trap.snapshot().connections == 0


def test_malformed_docker_config_fails_its_rule_before_any_connection(
    cli: CliRunner, trap: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docker's config.json is read lazily, when a rule first needs credentials
    # (a credential helper may be slow or absent where the file is loaded), so
    # by design (syncer_core/plan.py) it fails that rule, exit 1, not the run.
    docker_config = tmp_path / "docker-config"
    (docker_config / "config.json").write_text('{"auths": {"x": ')
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    before = trap.snapshot().connections

    run = cli(_argv(Case(auth=None), tmp_path, trap.host))

    assert run.code == 1, run.describe()
    assert run.report is not None and run.report["images"] == []
    [reason] = run.report["rule_errors"].values()
    assert str(docker_config / "config.json") in reason and "invalid JSON" in reason
    assert trap.snapshot().connections == before
