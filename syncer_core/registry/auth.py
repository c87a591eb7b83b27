"""Registry authentication as an `httpx.Auth`: anonymous, Basic, and Bearer tokens.

The Bearer flow follows the distribution token spec: a 401 carries
`WWW-Authenticate: Bearer realm=...,service=...,scope=...`; we fetch a token
from the realm (with Basic credentials when configured), cache it per scope
set, and replay the request. Design points:

- `sync_auth_flow` is overridden instead of setting `requires_response_body`,
  which would buffer every blob body; only 401 and token bodies are read.
- Credentials go only to the registry's own origin and to its token realm;
  a plain-HTTP realm is refused (`InsecureRealmError`) unless the registry
  itself is plain HTTP and the realm is on its host (`insecure` is no
  exception: it skips certificate checks, it does not allow clear text).
- A request with a streamed body cannot be replayed after a 401: callers open
  uploads with a body-less POST first, which leaves a cached token behind.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass

import httpx

from syncer_core.errors import (
    AuthenticationError,
    InsecureRealmError,
    TransientRegistryError,
)
from syncer_core.registry.access import RegistryAccess
from syncer_core.registry.challenge import Challenge, parse_www_authenticate
from syncer_core.registry.responses import error_from_response

__all__ = ["SCOPE_EXTENSION", "RegistryAuth", "scopes_for_request"]

#: Request extension through which the client names extra scopes (cross-repo mount).
SCOPE_EXTENSION = "syncer_scopes"
_MIN_TOKEN_LIFE = 60.0
_RENEW_EARLY = 5.0
#: Challenges answered per request: the first, and one more for a token refused on replay.
_CHALLENGE_ROUNDS = 2


def scopes_for_request(request: httpx.Request) -> tuple[str, ...]:
    """Derive the token scopes a registry request needs.

    `/v2/<name>/{manifests,blobs,tags}/...` needs `repository:<name>:pull`, plus
    `push` for anything but GET/HEAD. Extra scopes set by the client through
    the `syncer_scopes` request extension are added (mount needs pull on the
    source repository in the same token).
    """
    scopes: list[str] = []
    path = request.url.path
    if path.startswith("/v2/"):
        for marker in ("/manifests/", "/blobs/", "/tags/"):
            idx = path.find(marker)
            if idx > len("/v2/"):
                name = path[len("/v2/") : idx]
                readonly = request.method in ("GET", "HEAD")
                scopes.append(f"repository:{name}:{'pull' if readonly else 'pull,push'}")
                break
    extra = request.extensions.get(SCOPE_EXTENSION, ())
    scopes.extend(s for s in extra if s not in scopes)
    return tuple(scopes)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


@dataclass
class _Token:
    value: str
    expires_at: float


def _canonical_scope(scope: str) -> str:
    """Sort a scope's actions: distribution words one challenge `push,pull` or `pull,push`."""
    resource, sep, actions = scope.rpartition(":")
    if not sep or not resource:
        return scope
    return f"{resource}:{','.join(sorted(set(actions.split(','))))}"


def _scope_key(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({_canonical_scope(s) for s in scopes}))


class _TokenCache:
    """Thread-safe tokens keyed by the sorted, canonical scope set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], _Token] = {}

    def get(self, scopes: Iterable[str]) -> str | None:
        """A live token for exactly these scopes, else the newest one covering them.

        Covering matters for a mount that fell back to an upload: its session is
        finished with the mount's token (destination push + source pull).
        """
        key = _scope_key(scopes)
        now = time.monotonic()
        with self._lock:
            exact = self._tokens.get(key)
            if exact is not None and exact.expires_at - _RENEW_EARLY > now:
                return exact.value  # the usual case: no scan
            wanted = set(key)
            for k, token in reversed(self._tokens.items()):
                if wanted <= set(k) and token.expires_at - _RENEW_EARLY > now:
                    return token.value
        return None

    def put(self, scopes: Iterable[str], value: str, lifetime: float) -> None:
        with self._lock:
            expires = time.monotonic() + max(lifetime, _MIN_TOKEN_LIFE)
            self._tokens[_scope_key(scopes)] = _Token(value, expires)

    def discard(self, value: str) -> None:
        """Forget a token the registry refused, under whichever scope sets hold it."""
        with self._lock:
            for key in [k for k, t in self._tokens.items() if t.value == value]:
                del self._tokens[key]


class RegistryAuth(httpx.Auth):
    """Answer registry auth challenges for one registry origin.

    Args:
        access: the registry's credentials and `insecure` flag.
        registry: the registry host, used in error messages.
    """

    def __init__(self, access: RegistryAccess, registry: str):
        self._access = access
        self._registry = registry
        self._tokens = _TokenCache()
        self._origin: tuple[str, str, int | None] | None = None
        self._scheme: str | None = None  # "basic" or "bearer" once a challenge was seen

    def bind_origin(self, base_url: httpx.URL) -> None:
        """Fix the registry origin; credentials are never attached elsewhere."""
        self._origin = _origin(base_url)

    def _basic_header(self) -> str | None:
        if not self._access.has_basic_credentials:
            return None
        assert self._access.password is not None
        raw = f"{self._access.username}:{self._access.password.get_secret_value()}"
        return "Basic " + base64.b64encode(raw.encode()).decode()

    def _preauthorize(self, request: httpx.Request, scopes: tuple[str, ...]) -> None:
        if self._access.token is not None:
            request.headers["Authorization"] = f"Bearer {self._access.token.get_secret_value()}"
        elif self._scheme == "basic" and (basic := self._basic_header()):
            request.headers["Authorization"] = basic
        elif self._scheme == "bearer" and (token := self._tokens.get(scopes)):
            request.headers["Authorization"] = f"Bearer {token}"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Send `request`, answering a Basic or Bearer challenge if needed.

        One challenge is answered, plus one more when the registry calls the
        token it was just given `invalid_token`: with many requests sharing a
        token cache, a token can be revoked or expire between its issue and
        the replay. A second refusal is an error, never a loop.
        """
        if self._origin is not None and _origin(request.url) != self._origin:
            request.headers.pop("Authorization", None)
            yield request
            return
        scopes = scopes_for_request(request)
        self._preauthorize(request, scopes)
        response = yield request
        for attempt in range(_CHALLENGE_ROUNDS):
            if not self._answerable(request, response):
                return
            if attempt and not _token_refused(response):
                return  # e.g. insufficient_scope: a new token would be refused alike
            if not (yield from self._answer(request, response, scopes)):
                return
            response = yield request

    def _answerable(self, request: httpx.Request, response: httpx.Response) -> bool:
        """Whether this response is a challenge we may answer by replaying `request`."""
        if response.status_code != 401 or self._access.token is not None:
            return False
        if _origin(response.url) != _origin(request.url):
            return False  # a redirect target's challenge: its realm gets no credentials
        # A streamed body cannot be sent again, and answering would yield a
        # token request whose 200 httpx would hand the caller instead of this
        # 401; the caller turns the 401 into a retryable error.
        return _replayable(request)

    def _answer(
        self, request: httpx.Request, response: httpx.Response, scopes: tuple[str, ...]
    ) -> Generator[httpx.Request, httpx.Response, bool]:
        """Put the credential the challenge asks for on `request`; False if we have none."""
        challenges = parse_www_authenticate(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None and bearer.realm:
            response.read()
            wanted = tuple(dict.fromkeys(_canonical_scope(s) for s in (*scopes, *bearer.scopes)))
            token = yield from self._fetch_token(request, bearer, wanted)
            self._scheme = "bearer"
            request.headers["Authorization"] = f"Bearer {token}"
            return True
        if basic is not None and (header := self._basic_header()):
            response.read()
            self._scheme = "basic"
            request.headers["Authorization"] = header
            return True
        return False

    def async_auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        """Not supported: the engine is synchronous."""
        raise RuntimeError("RegistryAuth supports synchronous clients only")

    def _token_request(
        self,
        request: httpx.Request,
        realm: httpx.URL,
        challenge: Challenge,
        scopes: tuple[str, ...],
    ) -> httpx.Request:
        """Build the token request with the challenged request's timeouts and User-Agent.

        A request yielded by an auth flow is sent as built: without the
        `timeout` extension it has none at all, so a token service that
        accepts the connection and never answers would block forever.
        """
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        headers = {"Accept": "application/json"}
        if agent := request.headers.get("user-agent"):
            headers["User-Agent"] = agent
        extensions = (
            {"timeout": request.extensions["timeout"]} if "timeout" in request.extensions else {}
        )
        if self._access.identity_token is not None:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": self._access.identity_token.get_secret_value(),
                "client_id": "image-syncer",
                "service": challenge.service or "",
                "scope": " ".join(scopes),
            }
            return httpx.Request("POST", realm, data=form, headers=headers, extensions=extensions)
        params.extend(("scope", s) for s in scopes)
        if self._access.username:
            params.append(("account", self._access.username))
        if basic := self._basic_header():
            headers["Authorization"] = basic
        return httpx.Request(
            "GET", realm.copy_merge_params(params), headers=headers, extensions=extensions
        )

    def _check_realm(self, request: httpx.Request, realm: httpx.URL) -> None:
        """Refuse a plain-HTTP realm unless it is a plain-HTTP registry's own host.

        `insecure` is no exception: it skips certificate checks, yet a
        self-signed HTTPS registry still must not have its credentials (or
        a refresh token) sent unencrypted to an `http://` realm.
        """
        if realm.scheme == "https":
            return
        registry_url = request.url
        if registry_url.scheme == "http" and realm.host == registry_url.host:
            return  # nothing is encrypted on a plain-HTTP registry's own host anyway
        why = (
            "https registry, http realm"
            if registry_url.scheme == "https"
            else f"http realm on {realm.host}, not on the registry's host {registry_url.host}"
        )
        raise InsecureRealmError(
            f"{self._registry}: refusing token realm {realm.copy_with(query=None)} ({why}): "
            "credentials would travel unencrypted; a plain-HTTP realm is accepted only on "
            "the host of a plain-HTTP registry",
            registry=self._registry,
        )

    def _fetch_token(
        self, request: httpx.Request, challenge: Challenge, scopes: tuple[str, ...]
    ) -> Generator[httpx.Request, httpx.Response, str]:
        sent = request.headers.get("Authorization", "")
        if sent.startswith("Bearer ") and challenge.error != "insufficient_scope":
            # Our cached token was just refused: it expired or was revoked early.
            self._tokens.discard(sent.removeprefix("Bearer "))
        realm = request.url.join(challenge.realm or "")
        self._check_realm(request, realm)
        token_response = yield self._token_request(request, realm, challenge, scopes)
        token_response.read()
        what = f"token request to {realm.copy_with(query=None)}"
        if token_response.status_code in (401, 403):
            raise AuthenticationError(
                f"{self._registry}: credentials rejected by the token service ({what}: "
                f"{token_response.status_code})",
                registry=self._registry,
                status_code=token_response.status_code,
            )
        if not token_response.is_success:
            raise error_from_response(
                token_response, registry=self._registry, what=what, secrets=self._access.secrets()
            )
        value, lifetime = _parse_token(token_response, self._registry)
        self._tokens.put(scopes, value, lifetime)
        return value


def _token_refused(response: httpx.Response) -> bool:
    """Whether a 401 says the Bearer token itself is bad (expired or revoked), not our access."""
    challenges = parse_www_authenticate(response.headers.get_list("www-authenticate"))
    return any(c.scheme == "bearer" and c.error == "invalid_token" for c in challenges)


def _replayable(request: httpx.Request) -> bool:
    """A body we hold in memory can be sent again; a generator cannot."""
    return isinstance(request.stream, httpx.ByteStream)


def _parse_token(response: httpx.Response, registry: str) -> tuple[str, float]:
    try:
        doc = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise TransientRegistryError(
            f"{registry}: token service returned no JSON", registry=registry
        )
    value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value:
        raise AuthenticationError(f"{registry}: token service returned no token", registry=registry)
    expires = doc.get("expires_in")
    lifetime = (
        float(expires) if isinstance(expires, int | float) and expires > 0 else _MIN_TOKEN_LIFE
    )
    return value, lifetime
