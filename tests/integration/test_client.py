"""`RegistryClient` against Debian's real docker-registry (distribution 2.8.2).

Most tests run once per registry flavour (plain, htpasswd, tls, token); the
registry's access log (`RegistryServer.requests()`) and the token server's
records are used to check what went over the wire, not just the outcome.
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from syncer_core.digest import compute_digest
from syncer_core.errors import (
    AuthenticationError,
    ManifestRejectedError,
    NotFoundError,
    TLSVerificationError,
)
from syncer_core.manifest import RawManifest
from syncer_core.registry import (
    ClientOptions,
    ManifestHead,
    MountResult,
    RegistryAccess,
    RegistryClient,
    RetryPolicy,
)
from tests.integration.helpers import unique
from tests.support.images import TestImage, build_image, build_index, push_image
from tests.support.registry_server import LoggedRequest, RegistryServer, access_for
from tests.support.token_server import TokenRequest, TokenServer, parse_scope

pytestmark = pytest.mark.registry

KiB = 1024
MiB = 1024 * KiB


def _seed() -> int:
    return uuid.uuid4().int % 2**32


def _client(server: RegistryServer, access: RegistryAccess | None = None, **options: int):
    return RegistryClient(
        server.host,
        access=access_for(server) if access is None else access,
        options=ClientOptions(**options),
    )


def _log(server: RegistryServer, repository: str) -> list[LoggedRequest]:
    """Access-log entries for one repository (the unique names keep tests apart)."""
    return [r for r in server.requests() if r.path.startswith(f"/v2/{repository}/")]


def _answered(entries: list[LoggedRequest]) -> list[LoggedRequest]:
    """Leave out the 401 challenges that precede authorised requests."""
    return [r for r in entries if r.status != 401]


def _token_server(server: RegistryServer) -> TokenServer:
    assert server.token_server is not None
    return server.token_server


def _scope_set(request: TokenRequest) -> frozenset[tuple[str, str, frozenset[str]]]:
    """A token request's scopes, merged per resource, ignoring action order."""
    merged: dict[tuple[str, str], set[str]] = {}
    for scope in request.scopes:
        parsed = parse_scope(scope)
        assert parsed is not None, scope
        kind, name, actions = parsed
        merged.setdefault((kind, name), set()).update(actions)
    return frozenset((k, n, frozenset(a)) for (k, n), a in merged.items())


def _about(requests: list[TokenRequest], repository: str) -> list[TokenRequest]:
    return [r for r in requests if any(f":{repository}:" in s for s in r.scopes)]


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    """A generator, so the client has to stream it (it cannot be re-read)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def client(server: RegistryServer) -> Iterator[RegistryClient]:
    """A client with the flavour's credentials and trust settings."""
    with _client(server) as c:
        yield c


# -- ping and tags ----------------------------------------------------------------------


def test_ping(server: RegistryServer, client: RegistryClient) -> None:
    client.ping()
    assert client.base_url.scheme == server.scheme


def test_list_tags_sorted(client: RegistryClient) -> None:
    repository = unique("client/tags")
    image = build_image(_seed())
    tags = ["v10", "latest", "b", "v2", "a-1", "A"]
    for tag in tags:
        push_image(client, repository, tag, image)
    assert client.list_tags(repository) == sorted(tags)


def test_list_tags_of_missing_repository(server: RegistryServer, client: RegistryClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.list_tags(unique("client/missing"))
    assert caught.value.status_code == 404
    assert caught.value.registry == server.host


# -- manifests ----------------------------------------------------------------------------

KINDS: dict[str, Callable[[int], TestImage]] = {
    "docker-schema2": lambda seed: build_image(seed, image_format="docker"),
    "oci-manifest": lambda seed: build_image(seed, image_format="oci"),
    "docker-manifest-list": lambda seed: build_index(seed, image_format="docker"),
    "oci-index-attestation": lambda seed: build_index(
        seed, image_format="oci", attestation="artifact"
    ),
    "oci-index-buildx-attestation": lambda seed: build_index(
        seed, image_format="oci", attestation="unknown"
    ),
}


def _assert_round_trip(
    client: RegistryClient, repository: str, reference: str, manifest: RawManifest
) -> None:
    head = client.head_manifest(repository, reference)
    assert head == ManifestHead(manifest.digest, manifest.media_type, len(manifest.data))
    fetched = client.get_manifest(repository, reference)
    assert fetched.data == manifest.data  # byte-identical, not re-serialised
    assert fetched.media_type == manifest.media_type
    assert fetched.digest == manifest.digest


@pytest.mark.parametrize("kind", list(KINDS))
def test_manifest_put_head_get_round_trip(
    server: RegistryServer, client: RegistryClient, kind: str
) -> None:
    repository = unique(f"client/{kind}")
    image = KINDS[kind](_seed())
    # The harness's 3-space indentation: any re-serialisation would change the digest.
    assert b'\n   "schemaVersion"' in image.top.data
    for digest, data in image.blobs.items():
        assert client.head_blob(repository, digest) is None
        assert client.push_blob_bytes(repository, data) == digest
    for child in image.children:
        assert client.head_manifest(repository, child.digest) is None
        assert client.put_manifest(repository, child.digest, child) == child.digest
    assert client.put_manifest(repository, image.digest, image.top) == image.digest
    assert client.head_manifest(repository, "v1") is None
    assert client.put_manifest(repository, "v1", image.top) == image.digest

    for reference in ("v1", image.digest):
        _assert_round_trip(client, repository, reference, image.top)
    for child in image.children:
        _assert_round_trip(client, repository, child.digest, child)
    puts = [r for r in _answered(_log(server, repository)) if r.method == "PUT"]
    manifest_puts = [(r.path.rsplit("/", 1)[1], r.status) for r in puts if "/manifests/" in r.path]
    expected = [(c.digest, 201) for c in image.children] + [(image.digest, 201), ("v1", 201)]
    assert manifest_puts == expected


def test_missing_manifest(client: RegistryClient) -> None:
    repository = unique("client/no-manifest")
    client.push_blob_bytes(repository, b"repository exists")
    assert client.head_manifest(repository, "nope") is None
    assert client.head_manifest(repository, compute_digest(b"nope")) is None
    with pytest.raises(NotFoundError):
        client.get_manifest(repository, "nope")


def test_manifest_with_missing_blobs_is_rejected(registry_plain: RegistryServer) -> None:
    image = build_image(_seed())
    with _client(registry_plain) as client, pytest.raises(ManifestRejectedError) as caught:
        client.put_manifest(unique("client/rejected"), "v1", image.top)
    assert caught.value.status_code == 400
    assert "MANIFEST_BLOB_UNKNOWN" in str(caught.value)


# -- blobs ------------------------------------------------------------------------------


def test_blob_head_streamed_get_and_streamed_upload(server: RegistryServer) -> None:
    repository = unique("client/blobs")
    data = os.urandom(3 * MiB + 17)
    digest = compute_digest(data)
    with _client(server, chunk_size=256 * KiB) as client:
        assert client.head_blob(repository, digest) is None
        client.push_blob(repository, digest, _chunks(data, 100 * KiB), size=len(data))
        assert client.head_blob(repository, digest) == len(data)
        with client.open_blob(repository, digest) as blob:
            assert blob.size == len(data)
            chunks = list(blob.iter_chunks())
        with pytest.raises(NotFoundError), client.open_blob(repository, compute_digest(b"x")):
            pass
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 256 * KiB
    assert b"".join(chunks) == data
    uploads = [(r.method, r.status) for r in _answered(_log(server, repository))]
    # One session, one streamed PUT (no chunked PATCHes by default).
    assert uploads[:4] == [("HEAD", 404), ("POST", 202), ("PUT", 201), ("HEAD", 200)]


# -- cross-repository mount ------------------------------------------------------------------


def test_mount_from_another_repository(server: RegistryServer, client: RegistryClient) -> None:
    source, target = unique("client/mount-src"), unique("client/mount-dst")
    data = os.urandom(4 * KiB)
    digest = client.push_blob_bytes(source, data)
    assert client.mount_blob(target, digest, source) == MountResult(mounted=True)
    assert client.head_blob(target, digest) == len(data)
    posts = [r for r in _answered(_log(server, target)) if r.method == "POST"]
    assert [r.status for r in posts] == [201]
    assert f"mount={digest.replace(':', '%3A')}" in posts[0].path
    assert f"from={source.replace('/', '%2F')}" in posts[0].path


def test_mount_fallback_reuses_the_opened_session(
    server: RegistryServer, client: RegistryClient
) -> None:
    source, target = unique("client/fallback-src"), unique("client/fallback-dst")
    client.push_blob_bytes(source, b"source exists, without our blob")
    data = os.urandom(64 * KiB)
    digest = compute_digest(data)
    result = client.mount_blob(target, digest, source)
    assert result.mounted is False and result.upload_url
    client.push_blob(
        target, digest, _chunks(data, 8 * KiB), size=len(data), upload_url=result.upload_url
    )
    assert client.head_blob(target, digest) == len(data)
    entries = _answered(_log(server, target))
    assert [(r.method, r.status) for r in entries if r.method == "POST"] == [("POST", 202)]
    commit = [r for r in entries if r.method == "PUT"]
    assert [r.status for r in commit] == [201]
    assert commit[0].path.startswith(urlsplit(result.upload_url).path)


def test_mount_on_token_registry_uses_one_token_for_both_repositories(
    registry_token: RegistryServer,
) -> None:
    source, target = unique("client/tmount-src"), unique("client/tmount-dst")
    tokens = _token_server(registry_token)
    with _client(registry_token) as client:
        digest = client.push_blob_bytes(source, os.urandom(2 * KiB))
        before = len(tokens.requests)
        assert client.mount_blob(target, digest, source) == MountResult(mounted=True)
        assert client.head_blob(target, digest) == 2 * KiB
    both = {
        ("repository", target, frozenset({"pull", "push"})),
        ("repository", source, frozenset({"pull"})),
    }
    carrying = [r for r in tokens.requests[before:] if both <= _scope_set(r)]
    assert len(carrying) == 1, tokens.requests[before:]
    assert carrying[0].status == 200 and carrying[0].basic_auth
    granted = {(kind, name, frozenset(actions)) for kind, name, actions in carrying[0].granted}
    assert both <= granted


# -- authentication ---------------------------------------------------------------------------


def test_basic_credentials_are_sent_after_one_challenge(registry_htpasswd: RegistryServer) -> None:
    repository = unique("client/basic")
    with _client(registry_htpasswd) as client:
        push_image(client, repository, "v1", build_image(_seed()))
        client.list_tags(repository)
        client.get_manifest(repository, "v1")
    statuses = [r.status for r in _log(registry_htpasswd, repository)]
    assert statuses.count(401) == 1 and statuses[0] == 401


@pytest.mark.parametrize("flavour", ["htpasswd", "token"])
@pytest.mark.parametrize("operation", ["ping", "list_tags"])
def test_wrong_password_is_an_authentication_error_without_the_password(
    request: pytest.FixtureRequest, flavour: str, operation: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"registry_{flavour}")
    assert server.password
    wrong = f"wrong-{uuid.uuid4().hex}"
    access = RegistryAccess(insecure=True, username=server.username, password=SecretStr(wrong))
    with _client(server, access) as client, pytest.raises(AuthenticationError) as caught:
        if operation == "ping":
            client.ping()
        else:
            client.list_tags(unique("client/denied"))
    error = caught.value
    text = "".join(traceback.format_exception(error)) + repr(error)
    assert server.host in str(error) and error.registry == server.host
    assert error.status_code == 401
    assert wrong not in text and server.password not in text


def test_anonymous_access_to_htpasswd_registry_is_refused(
    registry_htpasswd: RegistryServer,
) -> None:
    access = access_for(registry_htpasswd, credentials=False)
    with _client(registry_htpasswd, access) as client, pytest.raises(AuthenticationError) as caught:
        client.ping()
    assert registry_htpasswd.host in str(caught.value)


def test_token_is_requested_once_per_scope(registry_token: RegistryServer) -> None:
    repository = unique("client/token-cache")
    tokens = _token_server(registry_token)
    before = len(tokens.requests)
    image = build_image(_seed(), layer_sizes=(1024, 2048, 4096))
    with _client(registry_token) as client:
        push_image(client, repository, "v1", image)
        push_image(client, repository, "v2", build_image(_seed()))
        for _ in range(5):
            assert client.list_tags(repository) == ["v1", "v2"]
            client.head_manifest(repository, "v1")
            client.get_manifest(repository, "v1")
            for digest in image.blobs:
                assert client.head_blob(repository, digest)
                with client.open_blob(repository, digest) as blob:
                    assert compute_digest(b"".join(blob.iter_chunks())) == digest
    mine = _about(tokens.requests[before:], repository)
    per_scope = Counter(_scope_set(r) for r in mine)
    pull = frozenset({("repository", repository, frozenset({"pull"}))})
    push = frozenset({("repository", repository, frozenset({"pull", "push"}))})
    assert per_scope[pull] == 1 and per_scope[push] == 1, mine
    assert all(count == 1 for count in per_scope.values()), mine
    assert all(r.status == 200 for r in mine)


def test_first_push_works_whatever_action_order_the_challenge_uses(
    registry_token: RegistryServer,
) -> None:
    # distribution 2.8.2 words roughly one upload challenge in ten
    # `repository:<name>:push,pull`; the token must still serve the streamed PUT
    # that follows the POST (which cannot answer a 401 itself). 40 fresh clients
    # miss that order with probability ~1.5 %.
    base = unique("client/challenge-order")
    for index in range(40):
        with _client(registry_token) as client:
            repository = f"{base}/{index}"
            digest = client.push_blob_bytes(repository, b"fresh client %d" % index)
            assert client.head_blob(repository, digest)


def test_expired_token_is_fetched_again_transparently(registry_token: RegistryServer) -> None:
    repository = unique("client/token-expiry")
    tokens = _token_server(registry_token)
    with _client(registry_token) as seeder:
        push_image(seeder, repository, "v1", build_image(_seed()))
    with _client(registry_token) as client:
        before = len(tokens.requests)
        # distribution accepts a JWT until 60 s past its `exp`: this one dies ~3 s
        # after issue. The client floors `expires_in` (1 s) at 60 s, so it still
        # holds the token when the registry starts refusing it.
        tokens.expires_in, tokens.jwt_lifetime = 1, -57
        try:
            assert client.list_tags(repository) == ["v1"]
            issued = time.time()
        finally:
            tokens.expires_in, tokens.jwt_lifetime = 300, None
        time.sleep(max(0.0, issued + 3.5 - time.time()))
        assert client.list_tags(repository) == ["v1"]
        assert client.list_tags(repository) == ["v1"]
    mine = _about(tokens.requests[before:], repository)
    assert [(r.scopes, r.status) for r in mine] == [((f"repository:{repository}:pull",), 200)] * 2
    tag_lists = [r.status for r in _log(registry_token, repository) if "/tags/list" in r.path]
    # first call: challenge + 200; after expiry: refused token, new token, 200; then cached.
    assert tag_lists == [401, 200, 401, 200, 200]


def test_token_the_registry_refuses_is_an_error_not_a_loop(registry_token: RegistryServer) -> None:
    tokens = _token_server(registry_token)
    repository = unique("client/token-dead")
    before = len(tokens.requests)
    tokens.jwt_lifetime = -120  # beyond distribution's 60 s leeway: always invalid_token
    try:
        with _client(registry_token) as client, pytest.raises(AuthenticationError):
            client.list_tags(repository)
    finally:
        tokens.jwt_lifetime = None
    # One fresh token more (a token can be revoked between issue and use), then the error.
    assert len(_about(tokens.requests[before:], repository)) == 2


def test_token_revoked_before_its_first_use_is_fetched_again(
    registry_token: RegistryServer,
) -> None:
    # Many requests share one token cache: another request may see the token we
    # were just given refused (and the registry revoke it) before our replay.
    tokens = _token_server(registry_token)
    repository = unique("client/token-revoked")
    with _client(registry_token) as client:
        client.push_blob_bytes(repository, b"x")
    before, logged = len(tokens.requests), len(_log(registry_token, repository))
    tokens.expire_next(1)
    with _client(registry_token) as client:
        assert client.head_blob(repository, compute_digest(b"x")) == 1
    assert [r.status for r in _about(tokens.requests[before:], repository)] == [200, 200]
    heads = [r.status for r in _log(registry_token, repository)[logged:]]
    assert heads == [401, 401, 200]  # no token, the revoked token, the fresh one


def test_token_service_hiccup_is_retried(registry_token: RegistryServer) -> None:
    tokens = _token_server(registry_token)
    repository = unique("client/token-retry")
    retry = RetryPolicy(attempts=3, base_delay=0.05)
    with RegistryClient(
        registry_token.host, access=access_for(registry_token), retry=retry
    ) as client:
        client.push_blob_bytes(repository, b"x")
        before = len(tokens.requests)
        tokens.fail_next(1, status=503)
    with RegistryClient(
        registry_token.host, access=access_for(registry_token), retry=retry
    ) as client:
        assert client.head_blob(repository, compute_digest(b"x")) == 1
    assert [r.status for r in _about(tokens.requests[before:], repository)] == [503, 200]


def _refresh_token(server: RegistryServer) -> str:
    """An OAuth2 refresh token (docker config `identitytoken`) from the token server."""
    tokens = _token_server(server)
    assert server.username and server.password
    form = {
        "grant_type": "password",
        "service": tokens.service,
        "client_id": "tests",
        "username": server.username,
        "password": server.password,
        "access_type": "offline",
    }
    with httpx.Client(timeout=10) as c:
        response = c.post(tokens.realm, data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["refresh_token"])


def test_identity_token_is_exchanged_for_an_access_token(registry_token: RegistryServer) -> None:
    repository = unique("client/identity-token")
    tokens = _token_server(registry_token)
    refresh = _refresh_token(registry_token)
    access = RegistryAccess(insecure=True, identity_token=SecretStr(refresh))
    before = len(tokens.requests)
    tokens.response_fields = "access_token"  # the OAuth2 reply: no `token` field
    try:
        with _client(registry_token, access) as client:
            push_image(client, repository, "v1", build_image(_seed()))
            push_image(client, repository, "v2", build_image(_seed()))
            assert client.list_tags(repository) == ["v1", "v2"]
    finally:
        tokens.response_fields = "both"
    mine = _about(tokens.requests[before:], repository)
    assert mine, "the client never asked the token server"
    assert all(r.method == "POST" and r.grant_type == "refresh_token" for r in mine), mine
    assert all(not r.basic_auth and r.status == 200 for r in mine), mine
    assert all(r.username == registry_token.username for r in mine), mine
    push = frozenset({("repository", repository, frozenset({"pull", "push"}))})
    assert push in {_scope_set(r) for r in mine}, mine


# -- TLS ---------------------------------------------------------------------------------


def test_tls_without_the_ca_is_a_verification_error(registry_tls: RegistryServer) -> None:
    started = time.monotonic()
    with RegistryClient(registry_tls.host) as client, pytest.raises(TLSVerificationError) as caught:
        client.ping()
    message = str(caught.value)
    assert registry_tls.host in message and caught.value.registry == registry_tls.host
    assert "certificate" in message.lower() and "ca_file" in message and "insecure" in message
    assert time.monotonic() - started < 5  # not retried as if it were transient


@pytest.mark.parametrize("trust", ["ca_file", "insecure"])
def test_tls_with_ca_file_or_insecure_works(registry_tls: RegistryServer, trust: str) -> None:
    if trust == "ca_file":
        access = RegistryAccess(ca_file=registry_tls.ca_file)
    else:
        access = RegistryAccess(insecure=True)
    repository = unique(f"client/tls-{trust}")
    with RegistryClient(registry_tls.host, access=access) as client:
        client.ping()
        assert client.base_url.scheme == "https"
        digest = client.push_blob_bytes(repository, b"over TLS")
        assert client.head_blob(repository, digest) == len(b"over TLS")
