"""Secrets stay secret, credentials stay on their origin, TLS is verified, outputs are private."""

from __future__ import annotations

import base64
import os
import secrets
import ssl
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import CliRunner, ProxyFactory
from tests.reliability.helpers import (
    BlobStore,
    auth_entry,
    client_for,
    run_cli,
    subprocess_env,
    tag_digests,
    write_document,
)
from tests.support.certs import CertPaths
from tests.support.images import build_image, build_index, push_image
from tests.support.registry_server import Flavour, RegistryServer
from tests.support.zoo import FaultRule

pytestmark = [pytest.mark.flow, pytest.mark.registry]

Fresh = Callable[[Flavour], RegistryServer]


def _seed(server: RegistryServer, repository: str, seed: int = 7000, tag: str = "v1") -> str:
    image = build_image(seed, layer_sizes=(3000, 700))
    with client_for(server) as client:
        push_image(client, repository, tag, image)
    return image.digest


def _files(tmp: Path, images: dict[str, Any], auth: dict[str, Any]) -> list[str]:
    return [
        "--images",
        str(write_document(tmp / "images.yaml", images)),
        "--auth",
        str(write_document(tmp / "auth.yaml", auth)),
    ]


# -- secrets --------------------------------------------------------------------------------------


def _all_output(tmp: Path, prefect_home: Path, stdout: str, stderr: str) -> dict[str, bytes]:
    """Everything the run left behind: its output, its files, the Prefect home (database)."""
    found = {"stdout": stdout.encode(), "stderr": stderr.encode()}
    for path in [*tmp.glob("out-*"), *prefect_home.rglob("*")]:
        if path.is_file():
            found[str(path)] = path.read_bytes()
    return found


@pytest.mark.slow
def test_passwords_never_reach_output_logs_reports_artifacts_or_the_prefect_database(
    fresh_registry: Fresh, tmp_path: Path
) -> None:
    src, basic, token = fresh_registry("plain"), fresh_registry("htpasswd"), fresh_registry("token")
    digest = _seed(src, "app/one")
    wrong_basic = f"WrongBasic-{secrets.token_urlsafe(12)}"
    wrong_token = f"WrongToken-{secrets.token_urlsafe(12)}"
    assert basic.password and token.password and basic.username and token.username
    S, B, T = src.host, basic.host, token.host
    images = {
        f"{S}/app/one:v1": [
            f"{B}/ok/one",  # password written in the auth file
            f"{T}/ok/one",  # password from ${IMAGE_SYNCER_TEST_TOKEN_PASSWORD}
            f"{B}/wrong/one",  # wrong password: the htpasswd error path
            f"{T}/wrong/one",  # wrong password: the token service error path
        ]
    }
    auth = {
        S: {"insecure": True},
        B: auth_entry(basic),
        T: {**auth_entry(token), "password": "${IMAGE_SYNCER_TEST_TOKEN_PASSWORD}"},
        f"{B}/wrong": {**auth_entry(basic), "password": wrong_basic},
        f"{T}/wrong": {**auth_entry(token), "password": wrong_token},
    }
    prefect_home = tmp_path / "prefect-home"
    env = subprocess_env(prefect_home, {"IMAGE_SYNCER_TEST_TOKEN_PASSWORD": token.password})
    outputs = [
        *("--log", str(tmp_path / "out-run.log")),
        *("--report", str(tmp_path / "out-report.json")),
        *("--output-success-images", str(tmp_path / "out-ok.yaml")),
        *("--output-failed-images", str(tmp_path / "out-failed.yaml")),
    ]

    run = run_cli([*_files(tmp_path, images, auth), *outputs], env)

    assert run.code == 1, run.describe()
    assert run.statuses() == {
        f"{B}/ok/one:v1": "synced",
        f"{T}/ok/one:v1": "synced",
        f"{B}/wrong/one:v1": "failed",
        f"{T}/wrong/one:v1": "failed",
    }
    assert "AuthenticationError" in run.failed()[f"{B}/wrong/one:v1"]
    assert "AuthenticationError" in run.failed()[f"{T}/wrong/one:v1"]
    assert tag_digests(basic, "ok/one") == tag_digests(token, "ok/one") == {"v1": digest}
    everything = _all_output(tmp_path, prefect_home, run.stdout, run.stderr)
    # Positive controls: these really are the run's records.
    database = b"".join(v for k, v in everything.items() if "prefect.db" in k)
    assert b"image-sync-report" in database  # the Markdown artifact's key
    assert f"{B}/wrong/one".encode() in database
    assert b"AuthenticationError" in everything[str(tmp_path / "out-run.log")]
    forbidden = {}
    for user, password in [
        (basic.username, basic.password),
        (token.username, token.password),
        (basic.username, wrong_basic),
        (token.username, wrong_token),
    ]:
        forbidden[password] = password.encode()
        forbidden[f"base64({user}:…)"] = base64.b64encode(f"{user}:{password}".encode())
    leaks = [
        f"{name} in {where}"
        for where, data in everything.items()
        for name, needle in forbidden.items()
        if needle in data
    ]
    assert leaks == []
    print(f"\nsearched {len(everything)} outputs ({sum(map(len, everything.values()))} bytes)")


# -- credentials stay on their origin -------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["htpasswd", "token"])
def test_authorization_is_not_sent_to_the_origin_a_blob_redirects_to(
    flavour: Flavour, cli: CliRunner, fresh_registry: Fresh, proxies: ProxyFactory
) -> None:
    src, dst = fresh_registry(flavour), fresh_registry("plain")
    image = build_index(7100, layer_sizes=(2000,))
    with client_for(src) as client:
        push_image(client, "app/multi", "v1", image)
    with BlobStore(src) as store:
        proxy = proxies(src, rewrite_realm=True)
        proxy.set_faults(FaultRule(kinds=("redirect",), redirect=store.redirect))
        args = _files(
            cli.tmp_path,
            {f"{proxy.host}/app/multi:v1": f"{dst.host}/mirror/multi"},
            {proxy.host: auth_entry(src), dst.host: {"insecure": True}},
        )

        run = cli(args)

    assert run.code == 0, run.describe()
    assert tag_digests(dst, "mirror/multi") == {"v1": image.digest}
    redirected = [r for r in proxy.requests() if r.fault == "redirect"]
    assert len(redirected) == len(store.seen) == len(image.blobs)
    # The registry got credentials with each blob GET; the other origin never did.
    assert {r.authorization for r in redirected} == {"basic" if flavour == "htpasswd" else "bearer"}
    assert [h for h in store.seen if "authorization" in h] == []


# -- TLS ------------------------------------------------------------------------------------------


def test_tls_is_verified_by_default_and_trusted_with_ca_file_or_insecure(
    cli: CliRunner, registry_tls: RegistryServer, fresh_registry: Fresh
) -> None:
    dst = fresh_registry("plain")
    L = registry_tls.host
    prefix = f"tls-{secrets.token_hex(4)}"
    digests = {
        name: _seed(registry_tls, f"{prefix}-{name}/app", 7200 + i)
        for i, name in enumerate(("default", "ca", "insecure"))
    }
    args = _files(
        cli.tmp_path,
        {f"{L}/{prefix}-{name}/app:v1": f"{dst.host}/{name}/app" for name in digests},
        {
            # Namespace keys: one registry, three trust settings.
            f"{L}/{prefix}-ca": {"ca_file": str(registry_tls.ca_file)},
            f"{L}/{prefix}-insecure": {"insecure": True},
            dst.host: {"insecure": True},
        },
    )

    run = cli(args)

    assert run.code == 1, run.describe()
    reason = run.failed()[f"{dst.host}/default/app:v1"]
    assert reason.startswith("TLSVerificationError: ") and "ca_file" in reason, reason
    assert set(run.failed()) == {f"{dst.host}/default/app:v1"}
    assert tag_digests(dst, "ca/app") == {"v1": digests["ca"]}
    assert tag_digests(dst, "insecure/app") == {"v1": digests["insecure"]}
    assert tag_digests(dst, "default/app") == {}


def _server_tls(certs: CertPaths) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    return context


def test_http_token_realm_of_an_https_registry_is_refused(
    cli: CliRunner, fresh_registry: Fresh, proxies: ProxyFactory, registry_certs: CertPaths
) -> None:
    # An HTTPS token registry: the proxy terminates TLS in front of the token
    # flavour. Its challenge names the token service's plain-http realm; a
    # second proxy rewrites the realm to https (through itself) as a control.
    registry, dst = fresh_registry("token"), fresh_registry("plain")
    digest = _seed(registry, "app/one")
    assert registry.token_server is not None
    http_realm = proxies(registry, tls=_server_tls(registry_certs))
    https_realm = proxies(registry, tls=_server_tls(registry_certs), rewrite_realm=True)
    trusted = {**auth_entry(registry), "ca_file": str(registry_certs.ca_cert)}
    trusted.pop("insecure")
    args = _files(
        cli.tmp_path,
        {
            f"{http_realm.host}/app/one:v1": f"{dst.host}/refused/one",
            f"{https_realm.host}/app/one:v1": f"{dst.host}/control/one",
        },
        {http_realm.host: trusted, https_realm.host: trusted, dst.host: {"insecure": True}},
    )
    registry.token_server.clear_requests()

    run = cli(args)

    assert run.code == 1, run.describe()
    assert set(run.failed()) == {f"{dst.host}/refused/one:v1"}
    reason = run.failed()[f"{dst.host}/refused/one:v1"]
    assert reason.startswith("InsecureRealmError: ") and "http realm" in reason, reason
    assert tag_digests(dst, "control/one") == {"v1": digest}
    # Every token request came through the https control proxy: none went to the http realm.
    requests = registry.token_server.requests
    assert requests and https_realm.snapshot().requests[("GET", "token")] == len(requests)
    assert http_realm.snapshot().total_requests > 0  # the refused registry was reached over TLS


# -- output files ---------------------------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000: whatever mode the CLI asks for is what the file gets."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_output_files_have_no_group_or_world_bits(
    cli: CliRunner, fresh_registry: Fresh, permissive_umask: None
) -> None:
    src, dst = fresh_registry("plain"), fresh_registry("plain")
    _seed(src, "app/one")
    tmp = cli.tmp_path
    paths = {
        flag: tmp / f"out{flag}"
        for flag in ("--log", "--output-success-images", "--output-failed-images")
    }
    stale = paths["--output-failed-images"]
    stale.write_text("left over, world-readable\n")
    stale.chmod(0o666)
    args = _files(
        tmp,
        {
            f"{src.host}/app/one:v1": f"{dst.host}/app/one",
            f"{src.host}/app/gone:v1": f"{dst.host}/x",
        },
        {src.host: {"insecure": True}, dst.host: {"insecure": True}},
    )

    run = cli([*args, *(part for flag, path in paths.items() for part in (flag, str(path)))])

    assert run.code == 1, run.describe()  # app/gone does not exist: a failed list is written
    report = next(tmp.glob("report-*.json"))
    for path in [*paths.values(), report]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.name}: {oct(mode)}"
    assert "app/gone" in stale.read_text()
