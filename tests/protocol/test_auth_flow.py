"""Registry auth against a scripted registry: anonymous, Bearer tokens, Basic, origin binding."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

import syncer_core.registry.auth as auth_module
from syncer_core.digest import compute_digest
from syncer_core.errors import (
    AuthenticationError,
    InsecureRealmError,
    RegistryError,
    TransientRegistryError,
)
from syncer_core.registry import ClientOptions, RegistryAccess
from syncer_core.registry.http import USER_AGENT
from tests.support.mock_registry import REGISTRY, Call, MockRegistry, bearer_challenge

USER = "alice"
PASSWORD = "pw-0f1e2d-never-shown"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
REALM = "https://auth.example/token"
SERVICE = "registry.example"
DIGEST = compute_digest(b"layer")
CREDENTIALS = RegistryAccess(username=USER, password=SecretStr(PASSWORD))


@pytest.fixture
def mock() -> Iterator[MockRegistry]:
    registry = MockRegistry()
    yield registry
    registry.assert_done()


class FakeClock:
    """Stands in for the `time` module inside `syncer_core.registry.auth`."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(auth_module, "time", fake)
    return fake


def authorization(expected: str | None):
    def check(call: Call) -> None:
        assert call.header("authorization") == expected

    return check


def token_url(*scopes: str, account: str | None = USER, realm: str = REALM) -> str:
    params = [("service", SERVICE), *(("scope", s) for s in scopes)]
    if account:
        params.append(("account", account))
    return str(httpx.URL(realm, params=params))


PULL = "repository:library/app:pull"
MANIFEST = "/v2/library/app/manifests/latest"
HEAD_OK = {"Docker-Content-Digest": DIGEST, "Content-Type": "application/json"}


def expect_token_dance(
    mock: MockRegistry,
    token: str = "T1",
    *,
    path: str = MANIFEST,
    scopes: tuple[str, ...] = (PULL,),
    token_json: dict[str, object] | None = None,
) -> None:
    """HEAD without auth → 401 Bearer → token (with Basic) → HEAD with the token."""
    mock.expect(
        "HEAD",
        path,
        status=401,
        headers=bearer_challenge(scope=" ".join(scopes)),
        check=authorization(None),
    )
    mock.expect(
        "GET",
        token_url(*scopes),
        json=token_json or {"token": token, "expires_in": 300},
        check=authorization(BASIC),
    )
    mock.expect("HEAD", path, headers=HEAD_OK, check=authorization(f"Bearer {token}"))


# -- anonymous and Bearer ------------------------------------------------------


def test_anonymous_registry_gets_no_authorization(mock: MockRegistry) -> None:
    mock.expect("GET", "/v2/", check=authorization(None))
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization(None))
    client = mock.client()
    client.ping()
    assert client.head_manifest("library/app", "latest").digest == DIGEST  # type: ignore[union-attr]


def test_bearer_challenge_fetches_token_with_basic_credentials_and_retries(
    mock: MockRegistry,
) -> None:
    expect_token_dance(mock)
    head = mock.client(access=CREDENTIALS).head_manifest("library/app", "latest")
    assert head is not None and head.digest == DIGEST
    token_request = mock.calls[1]
    assert token_request.url.host == "auth.example"
    assert token_request.params.get("service") == SERVICE
    assert token_request.params.get_list("scope") == [PULL]
    assert token_request.params.get("account") == USER


@pytest.mark.parametrize("identity", [False, True], ids=["get", "refresh-token-post"])
def test_token_request_has_the_client_timeouts_and_user_agent(
    mock: MockRegistry, identity: bool
) -> None:
    # Built outside the client, the token request had no timeout at all (a
    # stalled realm hung the run) and no User-Agent.
    access = RegistryAccess(identity_token=SecretStr("refresh-me")) if identity else CREDENTIALS
    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge(scope=PULL))
    mock.expect("POST" if identity else "GET", REALM, json={"token": "T"})
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK)
    options = ClientOptions(connect_timeout=3.0, read_timeout=7.0, write_timeout=9.0)
    mock.client(access=access, options=options).head_manifest("library/app", "latest")
    token_request = mock.calls[1].request
    assert token_request.extensions["timeout"] == {
        "connect": 3.0,
        "read": 7.0,
        "write": 9.0,
        "pool": options.pool_timeout,
    }
    assert token_request.headers["user-agent"] == USER_AGENT


def test_anonymous_token_request_sends_no_credentials_and_no_account(mock: MockRegistry) -> None:
    mock.expect(
        "GET", "/v2/library/app/tags/list", status=401, headers=bearer_challenge(scope=PULL)
    )
    mock.expect("GET", token_url(PULL, account=None), json={"token": "anon"})
    mock.expect(
        "GET", "/v2/library/app/tags/list", json={"tags": ["1"]}, check=authorization("Bearer anon")
    )
    assert mock.client().list_tags("library/app") == ["1"]
    assert mock.calls[1].header("authorization") is None


def test_cached_token_is_preapplied_for_the_same_scope(mock: MockRegistry) -> None:
    expect_token_dance(mock)
    for _ in range(2):  # no second 401, no second token request
        mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T1"))
    client = mock.client(access=CREDENTIALS)
    for _ in range(3):
        client.head_manifest("library/app", "latest")


def test_other_scope_gets_its_own_token(mock: MockRegistry) -> None:
    expect_token_dance(mock, "T1")
    other = "repository:library/other:pull"
    expect_token_dance(mock, "T2", path="/v2/library/other/manifests/latest", scopes=(other,))
    client = mock.client(access=CREDENTIALS)
    client.head_manifest("library/app", "latest")
    client.head_manifest("library/other", "latest")


@pytest.mark.parametrize("expires_in", [None, 10], ids=["absent", "below-minimum"])
def test_token_lifetime_defaults_to_60_seconds(
    mock: MockRegistry, clock: FakeClock, expires_in: int | None
) -> None:
    doc: dict[str, object] = {"token": "T1"}
    if expires_in is not None:
        doc["expires_in"] = expires_in
    expect_token_dance(mock, token_json=doc)
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T1"))
    # Renewed 5 s early: past 55 s the token is not sent again, the registry
    # challenges, and a fresh one is fetched.
    expect_token_dance(mock, "T2")
    client = mock.client(access=CREDENTIALS)
    client.head_manifest("library/app", "latest")
    clock.now += 54
    client.head_manifest("library/app", "latest")
    clock.now += 2
    client.head_manifest("library/app", "latest")


def test_expired_token_is_fetched_again(mock: MockRegistry, clock: FakeClock) -> None:
    expect_token_dance(mock, "T1")  # expires_in 300
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T1"))
    expect_token_dance(mock, "T2")
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T2"))
    client = mock.client(access=CREDENTIALS)
    client.head_manifest("library/app", "latest")
    clock.now += 290
    client.head_manifest("library/app", "latest")
    clock.now += 10
    client.head_manifest("library/app", "latest")
    client.head_manifest("library/app", "latest")


def test_token_refused_before_expiry_is_replaced(mock: MockRegistry) -> None:
    expect_token_dance(mock, "T1")
    mock.expect(
        "HEAD",
        MANIFEST,
        status=401,
        headers=bearer_challenge(scope=PULL),
        check=authorization("Bearer T1"),
    )
    mock.expect("GET", token_url(PULL), json={"token": "T2"}, check=authorization(BASIC))
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T2"))
    client = mock.client(access=CREDENTIALS)
    client.head_manifest("library/app", "latest")
    client.head_manifest("library/app", "latest")


def test_access_token_field_is_accepted(mock: MockRegistry) -> None:
    expect_token_dance(mock, "OAUTH", token_json={"access_token": "OAUTH", "expires_in": 300})
    assert mock.client(access=CREDENTIALS).head_manifest("library/app", "latest") is not None


def test_insufficient_scope_requests_a_token_with_the_challenge_scopes(mock: MockRegistry) -> None:
    expect_token_dance(mock, "T1")
    wider = "repository:library/app:pull,push"
    mock.expect(
        "HEAD",
        MANIFEST,
        status=401,
        headers=bearer_challenge(scope=wider, error="insufficient_scope"),
        check=authorization("Bearer T1"),
    )
    mock.expect("GET", token_url(PULL, wider), json={"token": "T2"}, check=authorization(BASIC))
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T2"))
    client = mock.client(access=CREDENTIALS)
    client.head_manifest("library/app", "latest")
    client.head_manifest("library/app", "latest")


@pytest.mark.parametrize(
    "challenge_scope",
    ["repository:dst:pull,push repository:src:pull", "repository:dst:pull,push"],
    ids=["challenge-lists-both", "challenge-lists-destination-only"],
)
def test_mount_token_covers_destination_push_and_source_pull(
    mock: MockRegistry, challenge_scope: str
) -> None:
    upload = "/v2/dst/blobs/uploads/"
    mock.expect(
        "POST",
        f"{upload}?mount={DIGEST}&from=src",
        status=401,
        headers=bearer_challenge(scope=challenge_scope),
    )
    mock.expect(
        "GET",
        token_url("repository:dst:pull,push", "repository:src:pull"),
        json={"token": "M"},
        check=authorization(BASIC),
    )
    mock.expect(
        "POST",
        f"{upload}?mount={DIGEST}&from=src",
        status=201,
        headers={"Location": f"/v2/dst/blobs/{DIGEST}"},
        check=authorization("Bearer M"),
    )
    result = mock.client(access=CREDENTIALS).mount_blob("dst", DIGEST, "src")
    assert result.mounted
    assert len([c for c in mock.calls if c.url.host == "auth.example"]) == 1


def test_identity_token_is_exchanged_with_a_refresh_token_grant(mock: MockRegistry) -> None:
    access = RegistryAccess(identity_token=SecretStr("refresh-me"))

    def form(call: Call) -> None:
        fields = httpx.QueryParams(call.body.decode())
        assert fields["grant_type"] == "refresh_token"
        assert fields["refresh_token"] == "refresh-me"
        assert fields["service"] == SERVICE
        assert fields["scope"] == PULL

    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge(scope=PULL))
    mock.expect("POST", REALM, json={"access_token": "T"}, check=form)
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T"))
    mock.client(access=access).head_manifest("library/app", "latest")


# -- Basic, static token ---------------------------------------------------------


def test_basic_challenge_resends_with_basic_then_preapplies_it(mock: MockRegistry) -> None:
    challenge = {"WWW-Authenticate": 'Basic realm="Registry Realm"'}
    mock.expect("GET", "/v2/", status=401, headers=challenge, check=authorization(None))
    mock.expect("GET", "/v2/", check=authorization(BASIC))
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization(BASIC))
    client = mock.client(access=CREDENTIALS)
    client.ping()
    client.head_manifest("library/app", "latest")


def test_basic_challenge_without_credentials_is_an_authentication_error(
    mock: MockRegistry,
) -> None:
    mock.expect("GET", "/v2/", status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    with pytest.raises(AuthenticationError) as info:
        mock.client().ping()
    assert info.value.status_code == 401


def test_static_token_is_sent_as_bearer_without_token_request(mock: MockRegistry) -> None:
    access = RegistryAccess(token=SecretStr("static-T"))
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer static-T"))
    mock.expect(
        "HEAD",
        MANIFEST,
        status=401,
        headers=bearer_challenge(scope=PULL),
        check=authorization("Bearer static-T"),
    )
    client = mock.client(access=access)
    client.head_manifest("library/app", "latest")
    with pytest.raises(AuthenticationError):  # a refused static token is final
        client.head_manifest("library/app", "latest")


# -- failures ----------------------------------------------------------------------


def test_wrong_password_at_token_endpoint_is_authentication_error(mock: MockRegistry) -> None:
    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge(scope=PULL))
    mock.expect(
        "GET",
        token_url(PULL),
        status=401,
        json={"details": "incorrect username or password"},
        check=authorization(BASIC),
    )
    with pytest.raises(AuthenticationError) as info:
        mock.client(access=CREDENTIALS).head_manifest("library/app", "latest")
    assert info.value.status_code == 401
    assert info.value.registry == REGISTRY
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value)


def test_rejected_basic_credentials_are_not_retried_forever(mock: MockRegistry) -> None:
    challenge = {"WWW-Authenticate": 'Basic realm="r"'}
    mock.expect("GET", "/v2/", status=401, headers=challenge)
    mock.expect(
        "GET",
        "/v2/",
        status=401,
        headers=challenge,
        json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
        check=authorization(BASIC),
    )
    with pytest.raises(AuthenticationError) as info:
        mock.client(access=CREDENTIALS).ping()
    assert info.value.errors[0]["code"] == "UNAUTHORIZED"


def test_token_without_token_field_is_authentication_error(mock: MockRegistry) -> None:
    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge(scope=PULL))
    mock.expect("GET", token_url(PULL), json={"expires_in": 300})
    with pytest.raises(AuthenticationError, match="no token"):
        mock.client(access=CREDENTIALS).head_manifest("library/app", "latest")


def test_http_realm_for_https_registry_is_refused(mock: MockRegistry) -> None:
    realm = "http://auth.example/token"
    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge(realm, scope=PULL))
    with pytest.raises(InsecureRealmError) as info:
        mock.client(access=CREDENTIALS).head_manifest("library/app", "latest")
    assert info.value.registry == REGISTRY
    assert PASSWORD not in str(info.value)
    assert all(call.url.host != "auth.example" for call in mock.calls)


@pytest.mark.parametrize("realm_host", ["auth.example", REGISTRY])
def test_http_realm_is_refused_for_insecure_registry(mock: MockRegistry, realm_host: str) -> None:
    # Once allowed (issue 15 #4): `insecure` (a self-signed
    # HTTPS registry) must not send Basic credentials in clear text to any
    # http realm, not even one on its own host.
    realm = f"http://{realm_host}/token"
    access = RegistryAccess(username=USER, password=SecretStr(PASSWORD), insecure=True)
    mock.expect("GET", "/v2/", check=authorization(None))  # https probe of an insecure registry
    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge(realm, scope=PULL))
    with pytest.raises(InsecureRealmError, match="https registry, http realm") as info:
        mock.client(access=access).head_manifest("library/app", "latest")
    assert PASSWORD not in str(info.value)
    assert [call.url.scheme for call in mock.calls] == ["https", "https"]  # no token request
    mock.assert_done()


def test_http_realm_on_a_plain_http_registrys_own_host_is_allowed(
    mock: MockRegistry,
) -> None:
    realm = f"http://{REGISTRY}:5001/token"  # another port of the registry's host
    mock.base_url = httpx.URL(f"http://{REGISTRY}/")
    access = RegistryAccess(username=USER, password=SecretStr(PASSWORD), insecure=True)
    mock.expect("GET", f"https://{REGISTRY}/v2/", raises=httpx.ConnectError("TLS on plain HTTP"))
    mock.expect("GET", "/v2/", status=401)  # the port answers plain HTTP
    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge(realm, scope=PULL))
    mock.expect(
        "GET", token_url(PULL, realm=realm), json={"token": "T"}, check=authorization(BASIC)
    )
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T"))
    assert mock.client(access=access).head_manifest("library/app", "latest") is not None


def test_http_realm_on_another_host_of_a_plain_http_registry_is_refused(
    mock: MockRegistry,
) -> None:
    mock.base_url = httpx.URL(f"http://{REGISTRY}/")
    access = RegistryAccess(username=USER, password=SecretStr(PASSWORD), insecure=True)
    mock.expect("GET", f"https://{REGISTRY}/v2/", raises=httpx.ConnectError("TLS on plain HTTP"))
    mock.expect("GET", "/v2/", status=401)  # the port answers plain HTTP
    mock.expect(
        "HEAD",
        MANIFEST,
        status=401,
        headers=bearer_challenge("http://auth.example/token", scope=PULL),
    )
    with pytest.raises(InsecureRealmError, match="not on the registry's host"):
        mock.client(access=access).head_manifest("library/app", "latest")
    assert all(call.url.host == REGISTRY for call in mock.calls)


def test_relative_realm_is_resolved_against_the_registry(mock: MockRegistry) -> None:
    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge("/auth/token", scope=PULL))
    mock.expect(
        "GET",
        token_url(PULL, realm=f"https://{REGISTRY}/auth/token"),
        json={"token": "T"},
        check=authorization(BASIC),
    )
    mock.expect("HEAD", MANIFEST, headers=HEAD_OK, check=authorization("Bearer T"))
    mock.client(access=CREDENTIALS).head_manifest("library/app", "latest")


# -- credentials stay on the registry's origin ---------------------------------------


BLOB = f"/v2/library/app/blobs/{DIGEST}"
CDN = f"https://cdn.example/blobs/{DIGEST}?signature=abc"


def expect_blob_token_dance(mock: MockRegistry, method: str) -> None:
    mock.expect(method, BLOB, status=401, headers=bearer_challenge(scope=PULL))
    mock.expect("GET", token_url(PULL), json={"token": "T"})


def test_blob_get_redirect_to_other_origin_drops_authorization(mock: MockRegistry) -> None:
    expect_blob_token_dance(mock, "GET")
    mock.expect(
        "GET",
        BLOB,
        status=307,
        headers={"Location": CDN},
        check=authorization("Bearer T"),
    )
    mock.expect(
        "GET",
        CDN,
        content=b"layer",
        headers={"Content-Length": "5"},
        check=authorization(None),
    )
    with mock.client(access=CREDENTIALS).open_blob("library/app", DIGEST) as blob:
        assert b"".join(blob.iter_chunks()) == b"layer"
        assert blob.size == 5


def test_blob_head_redirect_to_other_origin_drops_authorization(mock: MockRegistry) -> None:
    expect_blob_token_dance(mock, "HEAD")
    mock.expect("HEAD", BLOB, status=302, headers={"Location": CDN})
    mock.expect("HEAD", CDN, headers={"Content-Length": "5"}, check=authorization(None))
    assert mock.client(access=CREDENTIALS).head_blob("library/app", DIGEST) == 5


def test_upload_location_on_other_origin_gets_no_credentials(mock: MockRegistry) -> None:
    push = "repository:library/app:pull,push"
    mock.expect(
        "POST", "/v2/library/app/blobs/uploads/", status=401, headers=bearer_challenge(scope=push)
    )
    mock.expect("GET", token_url(push), json={"token": "P"})
    mock.expect(
        "POST",
        "/v2/library/app/blobs/uploads/",
        status=202,
        headers={"Location": "https://uploads.example/session/1?_state=s"},
        check=authorization("Bearer P"),
    )
    mock.expect("PUT", "https://uploads.example/session/1", status=201, check=authorization(None))
    mock.client(access=CREDENTIALS).push_blob("library/app", DIGEST, [b"layer"], size=5)


def test_basic_credentials_are_not_sent_to_other_origin(mock: MockRegistry) -> None:
    mock.expect("GET", "/v2/", status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    mock.expect("GET", "/v2/", check=authorization(BASIC))
    mock.expect(
        "POST",
        "/v2/library/app/blobs/uploads/",
        status=202,
        headers={"Location": "https://uploads.example/session/2"},
        check=authorization(BASIC),
    )
    mock.expect("PUT", "https://uploads.example/session/2", status=201, check=authorization(None))
    client = mock.client(access=CREDENTIALS)
    client.ping()
    client.push_blob("library/app", DIGEST, [b"layer"], size=5)


def test_challenge_from_other_origin_is_not_answered(mock: MockRegistry) -> None:
    # A redirect target asking for credentials must not receive them, nor
    # make us send Basic credentials to a realm it chose.
    mock.expect("GET", BLOB, status=307, headers={"Location": CDN})
    mock.expect(
        "GET",
        CDN,
        status=401,
        headers=bearer_challenge("https://evil.example/token", scope=PULL),
    )
    with (
        pytest.raises(AuthenticationError),
        mock.client(access=CREDENTIALS).open_blob("library/app", DIGEST),
    ):
        pass  # pragma: no cover
    assert all(call.url.host != "evil.example" for call in mock.calls)


def test_request_built_for_other_origin_carries_no_authorization(mock: MockRegistry) -> None:
    access = RegistryAccess(token=SecretStr("static-T"))
    mock.expect("GET", "/v2/", check=authorization("Bearer static-T"))
    mock.expect("GET", "https://elsewhere.example/v2/", check=authorization(None))
    client = mock.client(access=access)
    client.ping()
    client.send("GET", "https://elsewhere.example/v2/", what="probe")


# -- streamed uploads ------------------------------------------------------------------


def test_streamed_upload_put_is_not_replayed_after_401(mock: MockRegistry) -> None:
    location = "/v2/library/app/blobs/uploads/u1?_state=abc"
    mock.expect(
        "POST", "/v2/library/app/blobs/uploads/", status=202, headers={"Location": location}
    )
    mock.expect(
        "PUT",
        "/v2/library/app/blobs/uploads/u1",
        status=401,
        headers=bearer_challenge(scope="repository:library/app:pull,push"),
    )
    mock.expect("DELETE", location, status=204)  # the session is cancelled

    def chunks() -> Iterator[bytes]:
        yield b"lay"
        yield b"er"

    with pytest.raises(TransientRegistryError) as info:
        mock.client(access=CREDENTIALS).push_blob("library/app", DIGEST, chunks(), size=5)
    assert info.value.status_code == 401
    assert isinstance(info.value.__cause__, AuthenticationError)


# -- secrets -----------------------------------------------------------------------------


def failing_scenarios() -> list[tuple[str, list[tuple[str, str, dict[str, object]]]]]:
    challenge = bearer_challenge(scope=PULL)
    return [
        (
            "token-401",
            [
                ("HEAD", MANIFEST, {"status": 401, "headers": challenge}),
                ("GET", token_url(PULL), {"status": 401, "content": b"bad credentials"}),
            ],
        ),
        (
            "token-500",
            [
                ("HEAD", MANIFEST, {"status": 401, "headers": challenge}),
                ("GET", token_url(PULL), {"status": 500, "content": b"oops"}),
            ],
        ),
        (
            "token-not-json",
            [
                ("HEAD", MANIFEST, {"status": 401, "headers": challenge}),
                ("GET", token_url(PULL), {"status": 200, "content": b"<html>"}),
            ],
        ),
        (
            "token-endpoint-down",
            [
                ("HEAD", MANIFEST, {"status": 401, "headers": challenge}),
                ("GET", token_url(PULL), {"raises": httpx.ConnectError("refused")}),
            ],
        ),
        (
            "basic-rejected",
            [
                ("HEAD", MANIFEST, {"status": 401, "headers": {"WWW-Authenticate": "Basic"}}),
                ("HEAD", MANIFEST, {"status": 401, "headers": {"WWW-Authenticate": "Basic"}}),
            ],
        ),
        ("denied", [("HEAD", MANIFEST, {"status": 403, "json": {"errors": [{"code": "DENIED"}]}})]),
    ]


@pytest.mark.parametrize(
    "script", [s for _, s in failing_scenarios()], ids=[n for n, _ in failing_scenarios()]
)
def test_password_never_appears_in_errors(
    mock: MockRegistry, script: list[tuple[str, str, dict[str, object]]]
) -> None:
    for method, url, kwargs in script:
        mock.expect(method, url, **kwargs)  # type: ignore[arg-type]
    client = mock.client(access=CREDENTIALS)
    with pytest.raises(RegistryError) as info:
        client.head_manifest("library/app", "latest")
    error = info.value
    texts = [str(error), repr(error), repr(error.args), repr(error.errors), repr(vars(error))]
    texts += [repr(client.access), str(client.access)]
    for text in texts:
        assert PASSWORD not in text
        assert BASIC.split()[1] not in text


def test_password_echoed_by_token_service_is_redacted(mock: MockRegistry) -> None:
    echo = {"errors": [{"code": "UNKNOWN", "message": f"login {USER}:{PASSWORD} failed"}]}
    mock.expect("HEAD", MANIFEST, status=401, headers=bearer_challenge(scope=PULL))
    mock.expect("GET", token_url(PULL), status=500, json=echo)
    with pytest.raises(RegistryError) as info:
        mock.client(access=CREDENTIALS).head_manifest("library/app", "latest")
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value.errors)
