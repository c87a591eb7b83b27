"""The real-registry harness works: each flavour against docker-registry 2.8.2, with raw httpx.

Our own client is deliberately not used here, so a harness failure is never
confused with a client bug.
"""

from __future__ import annotations

import base64
import json
import os
import ssl

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from syncer_core import mediatypes as mt
from syncer_core.digest import compute_digest
from syncer_core.manifest import ImageIndex, ImageManifest, RawManifest
from tests.integration.helpers import unique
from tests.support import registry_server
from tests.support.images import build_image, build_index, push_image
from tests.support.registry_server import (
    LoggedRequest,
    RegistryServer,
    access_for,
    classify_path,
)
from tests.support.token_server import TokenServer, encode_jwt, libtrust_key_id, parse_scope

pytestmark = pytest.mark.registry


def _client(server: RegistryServer, **kwargs) -> httpx.Client:
    return httpx.Client(base_url=server.url, verify=server.ssl_context(), timeout=10, **kwargs)


def _token(
    server: RegistryServer, *scopes: str, auth: tuple[str, str] | None = None, anonymous=False
) -> str:
    ts = server.token_server
    assert ts is not None
    assert server.username and server.password
    creds = None if anonymous else (auth or (server.username, server.password))
    params: list[tuple[str, str | int | float | bool | None]] = [("service", ts.service)]
    params += [("scope", s) for s in scopes]
    with httpx.Client(timeout=10) as c:
        response = c.get(ts.realm, params=params, auth=creds)
    response.raise_for_status()
    return str(response.json()["token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _upload(client: httpx.Client, repo: str, data: bytes, headers=None) -> str:
    """Monolithic upload: POST, then PUT <Location>&digest=... (Location keeps its _state)."""
    digest = compute_digest(data)
    start = client.post(f"/v2/{repo}/blobs/uploads/", headers=headers)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    sep = "&" if "?" in location else "?"
    done = client.put(
        f"{location}{sep}digest={digest}",
        content=data,
        headers={**(headers or {}), "Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    return digest


class RawPusher:
    """Just enough of the `RegistryClient` interface for `push_image`, on raw httpx."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def head_blob(self, repository: str, digest: str) -> int | None:
        response = self.client.head(f"/v2/{repository}/blobs/{digest}")
        return int(response.headers["Content-Length"]) if response.status_code == 200 else None

    def push_blob_bytes(self, repository: str, data: bytes) -> str:
        return _upload(self.client, repository, data)

    def put_manifest(self, repository: str, reference: str, manifest: RawManifest) -> str:
        response = self.client.put(
            f"/v2/{repository}/manifests/{reference}",
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        assert response.status_code == 201, response.text
        return response.headers["Docker-Content-Digest"]


# -- plain ----------------------------------------------------------------------------


def test_plain_answers_v2(registry_plain: RegistryServer) -> None:
    assert registry_plain.flavour == "plain"
    assert registry_plain.scheme == "http"
    assert registry_plain.url == f"http://{registry_plain.host}"
    assert registry_plain.host.startswith("127.0.0.1:")
    assert registry_plain.config_path.is_file()
    assert registry_plain.storage_dir.is_dir()
    assert registry_plain.username is None and registry_plain.password is None
    with _client(registry_plain) as c:
        response = c.get("/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_two_plain_registries_are_independent(
    registry_plain: RegistryServer, registry_plain2: RegistryServer
) -> None:
    assert registry_plain.host != registry_plain2.host
    assert registry_plain.storage_dir != registry_plain2.storage_dir
    repo = unique("independent/blob")
    with _client(registry_plain) as one, _client(registry_plain2) as two:
        digest = _upload(one, repo, os.urandom(512))
        assert one.head(f"/v2/{repo}/blobs/{digest}").status_code == 200
        assert two.head(f"/v2/{repo}/blobs/{digest}").status_code == 404


# -- htpasswd -------------------------------------------------------------------------


def test_htpasswd_requires_basic_credentials(registry_htpasswd: RegistryServer) -> None:
    server = registry_htpasswd
    assert server.username and server.password
    with _client(server) as c:
        anonymous = c.get("/v2/")
        wrong = c.get("/v2/", auth=(server.username, "wrong"))
        right = c.get("/v2/", auth=(server.username, server.password))
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert wrong.status_code == 401
    assert right.status_code == 200


# -- tls ------------------------------------------------------------------------------


def test_tls_needs_the_test_ca(registry_tls: RegistryServer) -> None:
    server = registry_tls
    assert server.scheme == "https" and server.url.startswith("https://127.0.0.1:")
    assert server.ca_file is not None and server.ca_file.is_file()
    with httpx.Client(timeout=10) as c, pytest.raises(httpx.ConnectError, match="CERTIFICATE"):
        c.get(f"{server.url}/v2/")
    # httpx 0.28 deprecates verify=<path>; an SSLContext is the supported form.
    context = ssl.create_default_context(cafile=str(server.ca_file))
    with httpx.Client(verify=context, timeout=10) as c:
        assert c.get(f"{server.url}/v2/").status_code == 200
        assert c.get(f"https://localhost:{server.port}/v2/").status_code == 200


# -- token ----------------------------------------------------------------------------


def test_token_challenge_then_token_then_200(registry_token: RegistryServer) -> None:
    server, ts = registry_token, registry_token.token_server
    assert ts is not None and server.username and server.password
    ts.clear_requests()
    with _client(server) as c:
        challenge = c.get("/v2/")
        assert challenge.status_code == 401
        header = challenge.headers["WWW-Authenticate"]
        assert header == f'Bearer realm="{ts.realm}",service="{ts.service}"'
        token = _token(server, "repository:harness/one:pull")
        assert c.get("/v2/", headers=_bearer(token)).status_code == 200
    [record] = ts.requests
    assert record.basic_auth and record.username == server.username
    assert record.scopes == ("repository:harness/one:pull",)
    assert record.granted == (("repository", "harness/one", ("pull",)),)
    assert server.password not in repr(ts.requests)


@pytest.mark.parametrize("mode", ["x5c", "kid"])
def test_token_header_variants_accepted(registry_token: RegistryServer, mode) -> None:
    ts = registry_token.token_server
    assert ts is not None
    ts.header_mode = mode
    try:
        token = _token(registry_token, "repository:harness/variant:pull,push")
    finally:
        ts.header_mode = "x5c"
    with _client(registry_token) as c:
        assert c.get("/v2/", headers=_bearer(token)).status_code == 200
        assert c.get("/v2/harness/variant/tags/list", headers=_bearer(token)).status_code == 404


def test_token_signed_by_untrusted_key_is_rejected(registry_token: RegistryServer) -> None:
    ts = registry_token.token_server
    assert ts is not None
    good = ts.mint("syncer", [("repository", "harness/x", ["pull"])])
    claims = good.split(".")[1]
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    rogue = ec.generate_private_key(ec.SECP256R1())
    forged_kid = encode_jwt(decoded, rogue, {"kid": libtrust_key_id(rogue.public_key())})
    with _client(registry_token) as c:
        assert c.get("/v2/", headers=_bearer(good)).status_code == 200
        assert c.get("/v2/", headers=_bearer(forged_kid)).status_code == 401


def test_token_expiry_has_60s_leeway(registry_token: RegistryServer) -> None:
    ts = registry_token.token_server
    assert ts is not None
    scope = ("repository", "harness/expiry", ["pull"])
    try:
        ts.jwt_lifetime = -30
        recently_expired = ts.mint("syncer", [scope])
        ts.jwt_lifetime = -120
        long_expired = ts.mint("syncer", [scope])
    finally:
        ts.jwt_lifetime = None
    with _client(registry_token) as c:
        assert c.get("/v2/", headers=_bearer(recently_expired)).status_code == 200
        rejected = c.get("/v2/harness/expiry/tags/list", headers=_bearer(long_expired))
    assert rejected.status_code == 401
    assert 'error="invalid_token"' in rejected.headers["WWW-Authenticate"]


def test_token_policy(registry_token: RegistryServer) -> None:
    server, ts = registry_token, registry_token.token_server
    assert ts is not None and server.username
    with httpx.Client(timeout=10) as c:
        wrong = c.get(ts.realm, params={"service": ts.service}, auth=(server.username, "nope"))
    assert wrong.status_code == 401
    ts.clear_requests()
    public = _token(server, "repository:public/app:pull,push", anonymous=True)
    private = _token(server, "repository:private/app:pull", anonymous=True)
    catalog = _token(server, "registry:catalog:*", anonymous=True)
    granted = [r.granted for r in ts.requests]
    assert granted == [(("repository", "public/app", ("pull",)),), (), ()]
    assert all(not r.basic_auth and r.username is None for r in ts.requests)
    with _client(server) as c:
        # pull granted: the repository is merely unknown; no access: 401.
        assert c.get("/v2/public/app/tags/list", headers=_bearer(public)).status_code == 404
        assert c.get("/v2/private/app/tags/list", headers=_bearer(private)).status_code == 401
        assert c.get("/v2/_catalog", headers=_bearer(catalog)).status_code == 401
        assert c.post("/v2/public/app/blobs/uploads/", headers=_bearer(public)).status_code == 401


def test_token_response_shapes_failures_and_oauth(registry_token: RegistryServer) -> None:
    server, ts = registry_token, registry_token.token_server
    assert ts is not None and server.username and server.password
    creds = (server.username, server.password)
    params = {"service": ts.service, "scope": "repository:harness/shape:pull"}
    with httpx.Client(timeout=10) as c:
        try:
            ts.response_fields, ts.expires_in = "access_token", 120
            body = c.get(ts.realm, params=params, auth=creds).json()
            assert set(body) == {"access_token", "expires_in", "issued_at"}
            assert body["expires_in"] == 120 and body["issued_at"].endswith("Z")
            ts.response_fields = "token"
            assert "access_token" not in c.get(ts.realm, params=params, auth=creds).json()
        finally:
            ts.response_fields, ts.expires_in = "both", 300
        ts.fail_next(2, 503)
        assert [c.get(ts.realm, params=params).status_code for _ in range(3)] == [503, 503, 200]
        form = {
            "grant_type": "password",
            "service": ts.service,
            "client_id": "tests",
            "username": server.username,
            "password": server.password,
            "access_type": "offline",
            "scope": "repository:harness/a:pull repository:harness/b:pull",
        }
        oauth = c.post(ts.realm, data=form)
        assert oauth.status_code == 200, oauth.text
        refresh = oauth.json()["refresh_token"]
        renewed = c.post(
            ts.realm,
            data={
                "grant_type": "refresh_token",
                "service": ts.service,
                "refresh_token": refresh,
                "scope": "repository:harness/a:push",
            },
        )
        assert renewed.status_code == 200
        bad = c.post(ts.realm, data={"grant_type": "refresh_token", "refresh_token": "x"})
        assert bad.status_code == 401
    posts = [r for r in ts.requests if r.method == "POST"]
    assert posts[0].scopes == ("repository:harness/a:pull", "repository:harness/b:pull")
    assert posts[0].username == server.username and not posts[0].basic_auth
    assert posts[1].granted == (("repository", "harness/a", ("push",)),)
    with _client(server) as c:
        token = renewed.json()["access_token"]
        assert c.get("/v2/", headers=_bearer(token)).status_code == 200


def test_cross_repo_mount_with_a_two_scope_token(registry_token: RegistryServer) -> None:
    src, dst = unique("mount/src"), unique("mount/dst")
    with _client(registry_token) as c:
        digest = _upload(
            c, src, os.urandom(2048), _bearer(_token(registry_token, f"repository:{src}:push,pull"))
        )
        url = f"/v2/{dst}/blobs/uploads/?mount={digest}&from={src}"
        challenge = c.post(url)
        assert challenge.status_code == 401
        # 2.8.2 asks for both repositories in one challenge; the action order varies.
        asked = challenge.headers["WWW-Authenticate"].split('scope="', 1)[1].rstrip('"')
        assert {parse_scope(s) for s in asked.split()} in (
            {("repository", dst, ("push", "pull")), ("repository", src, ("pull",))},
            {("repository", dst, ("pull", "push")), ("repository", src, ("pull",))},
        )
        token = _token(registry_token, f"repository:{src}:pull", f"repository:{dst}:push,pull")
        mounted = c.post(url, headers=_bearer(token))
        assert mounted.status_code == 201, mounted.text
        assert mounted.headers["Docker-Content-Digest"] == digest
        assert c.head(f"/v2/{dst}/blobs/{digest}", headers=_bearer(token)).status_code == 200


# -- lifecycle, log parsing, wipe -------------------------------------------------------


def test_requests_are_parsed_from_the_access_log(fresh_registry) -> None:
    server = fresh_registry("plain")
    missing = "sha256:" + "0" * 64
    with _client(server) as c:
        c.get("/v2/")
        c.head(f"/v2/logs/repo/blobs/{missing}")
        digest = _upload(c, "logs/repo", b"hello")
    requests = server.requests()
    assert requests[:2] == [("GET", "/v2/", 200), ("HEAD", f"/v2/logs/repo/blobs/{missing}", 404)]
    assert requests[2] == LoggedRequest("POST", "/v2/logs/repo/blobs/uploads/", 202)
    assert requests[3].method == "PUT" and f"digest={digest}" in requests[3].path
    assert requests[3].status == 201 and len(requests) == 4
    assert server.request_counts() == {
        ("GET", "ping"): 1,
        ("HEAD", "blob"): 1,
        ("POST", "upload"): 1,
        ("PUT", "upload"): 1,
    }


def test_classify_path() -> None:
    assert classify_path("/v2/") == "ping"
    assert classify_path("/v2/_catalog?n=10") == "catalog"
    assert classify_path("/v2/a/b/tags/list") == "tags"
    assert classify_path("/v2/a/manifests/latest") == "manifest"
    assert classify_path("/v2/a/blobs/uploads/x?_state=y") == "upload"
    assert classify_path("/v2/a/blobs/sha256:00") == "blob"


def test_wipe_restarts_empty_on_the_same_port(fresh_registry) -> None:
    server = fresh_registry("plain")
    host, first_log, first_pid = server.host, server.log_path, server.pid
    with _client(server) as c:
        digest = _upload(c, "wipe/me", b"content")
    server.wipe()
    assert server.host == host and server.pid != first_pid and server.log_path != first_log
    assert server.requests() == []
    with _client(server) as c:
        assert c.head(f"/v2/wipe/me/blobs/{digest}").status_code == 404
        assert _upload(c, "wipe/me", b"content") == digest


def test_wipe_keeps_the_token_server(fresh_registry) -> None:
    server = fresh_registry("token")
    realm = server.token_server.realm
    server.wipe()
    assert server.token_server is not None and server.token_server.realm == realm
    with _client(server) as c:
        assert c.get("/v2/", headers=_bearer(_token(server))).status_code == 200


def test_stop_terminates_by_pid_and_is_idempotent(fresh_registry) -> None:
    server = fresh_registry("token")
    pid, realm = server.pid, server.token_server.realm
    assert pid is not None
    server.stop()
    server.stop()
    assert server.pid is None and server.token_server is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with httpx.Client(timeout=2) as c, pytest.raises(httpx.ConnectError):
        c.get(realm)


def test_missing_binary_skips_locally_and_fails_in_ci(monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install docker-registry"):
        registry_server.registry_binary()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RuntimeError, match="apt-get install docker-registry"):
        registry_server.registry_binary()


def test_access_for(registry_plain, registry_htpasswd, registry_tls, registry_token) -> None:
    plain = access_for(registry_plain)
    assert plain.insecure and plain.username is None and plain.password is None
    basic = access_for(registry_htpasswd)
    assert basic.insecure and basic.username == registry_htpasswd.username
    assert basic.password is not None
    assert basic.password.get_secret_value() == registry_htpasswd.password
    assert access_for(registry_token).has_basic_credentials
    assert not access_for(registry_token, credentials=False).has_basic_credentials
    tls = access_for(registry_tls)
    assert not tls.insecure and tls.ca_file == registry_tls.ca_file
    assert tls.ca_file is not None and tls.ca_file.is_file()


def test_parse_scope() -> None:
    assert parse_scope("repository:a/b:pull,push") == ("repository", "a/b", ("pull", "push"))
    assert parse_scope("repository:reg:5000/a:pull") == ("repository", "reg:5000/a", ("pull",))
    assert parse_scope("repository(plugin):a:pull") == ("repository", "a", ("pull",))
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ("*",))
    assert parse_scope("garbage") is None


# -- synthetic images are accepted by the real registry ----------------------------------


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: build_image(1), id="docker-schema2"),
        pytest.param(lambda: build_image(2, image_format="oci"), id="oci-manifest"),
        pytest.param(lambda: build_index(3, image_format="docker"), id="docker-list"),
        pytest.param(lambda: build_index(4), id="oci-index"),
        pytest.param(lambda: build_index(5, attestation="artifact"), id="oci-index-artifact"),
        pytest.param(lambda: build_index(6, attestation="unknown"), id="oci-index-unknown"),
    ],
)
def test_built_images_push_and_read_back(registry_plain: RegistryServer, build) -> None:
    image = build()
    repo = unique("images/built")
    with _client(registry_plain) as c:
        assert push_image(RawPusher(c), repo, "v1", image) == image.digest
        got = c.get(f"/v2/{repo}/manifests/v1", headers={"Accept": mt.MANIFEST_ACCEPT})
        assert got.status_code == 200
        assert got.content == image.top.data
        assert got.headers["Content-Type"] == image.top.media_type
        for child in image.children:
            assert (
                c.head(
                    f"/v2/{repo}/manifests/{child.digest}", headers={"Accept": mt.MANIFEST_ACCEPT}
                ).status_code
                == 200
            )


def test_builders_are_deterministic_and_consistent() -> None:
    one, two = build_index(7, attestation="artifact"), build_index(7, attestation="artifact")
    assert one.digest == two.digest and one.blobs == two.blobs
    assert build_index(8).digest != one.digest
    index = one.top.parsed
    assert isinstance(index, ImageIndex)
    assert [str(d.platform) for d in index.manifests[:3]] == [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
    ]
    assert index.manifests[3].platform is None
    assert index.manifests[3].annotations == {
        "vnd.docker.reference.digest": one.children[0].digest,
        "vnd.docker.reference.type": "attestation-manifest",
    }
    assert [d.digest for d in index.manifests] == [m.digest for m in one.children]
    for child in one.children:
        parsed = child.parsed
        assert isinstance(parsed, ImageManifest)
        for blob in parsed.blob_descriptors():
            assert compute_digest(one.blobs[blob.digest]) == blob.digest
            assert len(one.blobs[blob.digest]) == blob.size
    unknown = build_index(7, attestation="unknown").top.parsed
    assert isinstance(unknown, ImageIndex)
    assert str(unknown.manifests[3].platform) == "unknown/unknown"
    sized = build_image(9, layer_sizes=(10, 20, 30))
    assert sorted(len(b) for b in sized.blobs.values())[:3] == [10, 20, 30]
    assert sized.manifests == [sized.top] and sized.top.media_type == mt.DOCKER_MANIFEST_V2
    with pytest.raises(ValueError):
        build_index(1, image_format="docker", attestation="unknown")


def test_token_server_standalone(registry_certs) -> None:
    with TokenServer(registry_certs.token_key, registry_certs.token_cert, password="pw") as ts:
        with httpx.Client(timeout=5) as c:
            assert c.get(ts.realm.replace("/token", "/other")).status_code == 404
            ok = c.get(ts.realm, params={"scope": "repository:x:pull"}, auth=("syncer", "pw"))
        assert ok.status_code == 200
        assert ok.json()["token"] == ok.json()["access_token"]
