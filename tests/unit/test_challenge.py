"""`WWW-Authenticate` parsing (RFC 7235 §4.1), after containers/image `wwwauthenticate_test.go`."""

from __future__ import annotations

import pickle

import pytest

from syncer_core.registry.challenge import Challenge, parse_www_authenticate

# The challenge distribution 2.8.2 sends when a cross-repository mount needs two scopes.
DISTRIBUTION_MOUNT = (
    'Bearer realm="http://127.0.0.1:1234/token",service="registry",'
    'scope="repository:b/repo:push,pull repository:a/repo:pull"'
)


def bearer(**params: str) -> Challenge:
    return Challenge("bearer", params)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            [DISTRIBUTION_MOUNT],
            [
                bearer(
                    realm="http://127.0.0.1:1234/token",
                    service="registry",
                    scope="repository:b/repo:push,pull repository:a/repo:pull",
                )
            ],
            id="distribution-2.8.2-mount",
        ),
        pytest.param(
            [
                'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                'scope="repository:samalba/my-app:pull,push",error="insufficient_scope"'
            ],
            [
                bearer(
                    realm="https://auth.docker.io/token",
                    service="registry.docker.io",
                    scope="repository:samalba/my-app:pull,push",
                    error="insufficient_scope",
                )
            ],
            id="token-spec-insufficient-scope",
        ),
        pytest.param(
            ['Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:u/r:pull"'],
            [bearer(realm="https://ghcr.io/token", service="ghcr.io", scope="repository:u/r:pull")],
            id="ghcr",
        ),
        pytest.param(
            ['Basic realm="Registry Realm"'],
            [Challenge("basic", {"realm": "Registry Realm"})],
            id="basic-with-realm",
        ),
        pytest.param(["Basic"], [Challenge("basic", {})], id="scheme-only"),
        pytest.param(
            ["Basic abc=="], [Challenge("basic", {}, token68="abc==")], id="basic-token68"
        ),
        pytest.param(
            ["Negotiate a+b/c-d._~e="],
            [Challenge("negotiate", {}, token68="a+b/c-d._~e=")],
            id="token68-all-chars",
        ),
        pytest.param(
            ['Bearer realm="https://a/token", Basic realm="b"'],
            [bearer(realm="https://a/token"), Challenge("basic", {"realm": "b"})],
            id="two-challenges-one-value",
        ),
        pytest.param(
            ['Basic realm="b", Bearer realm="https://a/token",service="s"'],
            [Challenge("basic", {"realm": "b"}), bearer(realm="https://a/token", service="s")],
            id="basic-then-bearer-one-value",
        ),
        pytest.param(
            ["Basic abc==, Bearer realm=x"],
            [Challenge("basic", {}, token68="abc=="), bearer(realm="x")],
            id="token68-then-challenge",
        ),
        pytest.param(
            ['Bearer realm="https://a/token"', 'Basic realm="b"'],
            [bearer(realm="https://a/token"), Challenge("basic", {"realm": "b"})],
            id="two-header-values",
        ),
        pytest.param(
            ["Basic, Bearer"],
            [Challenge("basic", {}), Challenge("bearer", {})],
            id="two-bare-schemes",
        ),
        pytest.param(
            ['  Bearer   realm = "r" ,service="s" ,  scope=  "x"  '],
            [bearer(realm="r", service="s", scope="x")],
            id="odd-whitespace",
        ),
        pytest.param(
            ['Bearer\trealm="r",\tservice="s"'],
            [bearer(realm="r", service="s")],
            id="tabs",
        ),
        pytest.param(
            [',, Bearer realm="r",, ,service="s",,'],
            [bearer(realm="r", service="s")],
            id="empty-list-elements",
        ),
        pytest.param(
            [r'Bearer realm="say \"hi\"",service="back\\slash"'],
            [bearer(realm='say "hi"', service="back\\slash")],
            id="escaped-quotes",
        ),
        pytest.param(
            [r'Bearer realm="a\,b\x"'],
            [bearer(realm="a,bx")],
            id="quoted-pair-any-char",
        ),
        pytest.param(
            ['Bearer realm="a, b=c, Basic d"'],
            [bearer(realm="a, b=c, Basic d")],
            id="commas-and-equals-inside-quotes",
        ),
        pytest.param(
            ['Bearer realm=""'],
            [bearer(realm="")],
            id="empty-quoted-value",
        ),
        pytest.param(
            ['BEARER REALM="https://a/token",Service="s",SCOPE="repository:X:pull"'],
            [bearer(realm="https://a/token", service="s", scope="repository:X:pull")],
            id="case-insensitive-names-values-kept",
        ),
        pytest.param(
            ["bAsIc Realm=r"],
            [Challenge("basic", {"realm": "r"})],
            id="mixed-case-unquoted",
        ),
        pytest.param(
            ["Bearer realm=https://auth.example.com/token,service=registry.example.com"],
            [bearer(realm="https://auth.example.com/token", service="registry.example.com")],
            id="unquoted-url-values",
        ),
        pytest.param(
            ['Bearer realm="first",realm="second"'],
            [bearer(realm="first")],
            id="repeated-param-first-wins",
        ),
        pytest.param(
            ['Bearer realm="a" Basic realm="b"'],
            [bearer(realm="a"), Challenge("basic", {"realm": "b"})],
            id="missing-comma-between-challenges",
        ),
        pytest.param(
            ['Bearer realm="r", @@@, service="s"'],
            [bearer(realm="r", service="s")],
            id="garbage-element-skipped",
        ),
        pytest.param(
            ['realm="r", Basic'],
            [Challenge("basic", {})],
            id="param-before-any-scheme-skipped",
        ),
        pytest.param(
            ['Bearer realm="https://a/token",service="unterminated'],
            [bearer(realm="https://a/token")],
            id="unterminated-quote-dropped",
        ),
        pytest.param(
            ['Bearer realm="https://a/token",error='],
            [bearer(realm="https://a/token")],
            id="param-without-value-dropped",
        ),
        pytest.param([""], [], id="empty-string"),
        pytest.param([], [], id="no-values"),
        pytest.param(["   ,  , "], [], id="only-separators"),
        pytest.param(['"just a quoted string"'], [], id="quoted-string-only"),
        pytest.param(["=== @@@ ((("], [], id="garbage"),
        pytest.param(
            ["Bearer realm=\u00e9t\u00e9"], [bearer(realm="\u00e9t\u00e9")], id="non-ascii"
        ),
    ],
)
def test_parse_www_authenticate(values: list[str], expected: list[Challenge]) -> None:
    assert parse_www_authenticate(values) == expected


def test_single_string_is_one_value_not_characters() -> None:
    assert parse_www_authenticate('Basic realm="r"') == [Challenge("basic", {"realm": "r"})]


def test_accepts_any_iterable() -> None:
    values = iter(['Basic realm="r"', "Bearer"])
    assert [c.scheme for c in parse_www_authenticate(values)] == ["basic", "bearer"]


def test_properties_of_distribution_mount_challenge() -> None:
    (challenge,) = parse_www_authenticate([DISTRIBUTION_MOUNT])
    assert challenge.scheme == "bearer"
    assert challenge.realm == "http://127.0.0.1:1234/token"
    assert challenge.service == "registry"
    assert challenge.scopes == ["repository:b/repo:push,pull", "repository:a/repo:pull"]
    assert challenge.error is None


def test_properties_when_absent() -> None:
    challenge = Challenge("basic", {})
    assert challenge.realm is None
    assert challenge.service is None
    assert challenge.scopes == []
    assert challenge.error is None
    assert challenge.token68 is None


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        pytest.param("repository:a:pull", ["repository:a:pull"], id="one"),
        pytest.param(
            "  repository:a:pull   registry:catalog:* ",
            ["repository:a:pull", "registry:catalog:*"],
            id="extra-spaces",
        ),
        pytest.param("", [], id="empty"),
    ],
)
def test_scopes_split_on_spaces(scope: str, expected: list[str]) -> None:
    assert Challenge("bearer", {"scope": scope}).scopes == expected


def test_error_property() -> None:
    (challenge,) = parse_www_authenticate(['Bearer realm="r",error="insufficient_scope"'])
    assert challenge.error == "insufficient_scope"


def test_hand_built_challenge_is_normalised() -> None:
    challenge = Challenge("Bearer", {"Realm": "r", "SERVICE": "s"})
    assert challenge.scheme == "bearer"
    assert dict(challenge.params) == {"realm": "r", "service": "s"}
    assert challenge == bearer(realm="r", service="s")


def test_challenge_is_frozen_hashable_and_picklable() -> None:
    challenge = bearer(realm="r")
    with pytest.raises(AttributeError):
        challenge.scheme = "basic"  # type: ignore[misc]
    assert hash(challenge) == hash(bearer(realm="r"))
    assert pickle.loads(pickle.dumps(challenge)) == challenge


def test_params_are_a_copy_of_the_input() -> None:
    params = {"realm": "r"}
    challenge = Challenge("bearer", params)
    params["realm"] = "changed"
    assert challenge.realm == "r"
