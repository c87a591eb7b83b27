"""A small Docker distribution token server for the token-auth test registry.

Implements `docs/spec/auth/token.md` (GET with Basic credentials) and
`oauth.md` (POST with `grant_type=password|refresh_token`) well enough for
distribution 2.8.2 to accept its JWTs through `auth.token.rootcertbundle`.

Policy: the configured user gets every action it asks for; a user added with
`add_user` gets every action, but only on repositories under its prefixes;
anonymous callers get `pull` on repositories under the public prefixes and
nothing else; wrong credentials get 401. Every request is recorded (never the password) so tests
can assert what a client asked for.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support.certs import load_private_key

__all__ = [
    "HeaderMode",
    "ResponseFields",
    "TokenRequest",
    "TokenServer",
    "encode_jwt",
    "libtrust_key_id",
    "parse_scope",
]

#: How the JWT names its signing key: an `x5c` certificate chain or a libtrust `kid`.
HeaderMode = Literal["x5c", "kid"]
#: Which token fields the JSON response carries.
ResponseFields = Literal["both", "token", "access_token"]


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered (the password is never kept).

    Attributes:
        method: `GET` or `POST`.
        service: the `service` parameter.
        scopes: every requested scope, split on spaces, in request order.
        account: the `account` parameter (GET) or `username` field (POST).
        grant_type: `password` / `refresh_token` for POST, None for GET.
        basic_auth: whether an `Authorization: Basic` header was sent.
        username: the user name presented (Basic, form or refresh token).
        status: the HTTP status answered.
        granted: the `access` claim issued, as `(type, name, actions)`.
    """

    method: str
    service: str | None
    scopes: tuple[str, ...]
    account: str | None
    grant_type: str | None
    basic_auth: bool
    username: str | None
    status: int
    granted: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid` distribution derives from a key (docs/spec/auth/jwt.md).

    SHA-256 of the DER SubjectPublicKeyInfo, truncated to 240 bits, base32,
    split into 12 groups of four joined by `:`.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def encode_jwt(
    claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, header: dict[str, Any]
) -> str:
    """Sign claims as a compact ES256 JWS.

    Args:
        claims: the claim set.
        key: a P-256 private key.
        header: extra JOSE header fields (`x5c` or `kid`); `typ` and `alg` are set here.

    Returns:
        `header.payload.signature`, base64url without padding.
    """
    head = {"typ": "JWT", "alg": "ES256", **header}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (head, claims)
    )
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    # JWS wants the raw r||s pair, not the DER sequence cryptography returns.
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def parse_scope(scope: str) -> tuple[str, str, tuple[str, ...]] | None:
    """Split `type[(class)]:name:actions`; the name may hold a `host:port`.

    Returns:
        `(type, name, actions)`, or None for a malformed scope.
    """
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name or not actions:
        return None
    kind = kind.split("(", 1)[0]
    return kind, name, tuple(a for a in actions.split(",") if a)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: TokenServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet; requests are recorded instead."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self._dispatch(url.path, parse_qs(url.query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode()) if length else {}
        self._dispatch(urlsplit(self.path).path, form)

    def _dispatch(self, path: str, params: dict[str, list[str]]) -> None:
        if path != "/token":
            self._send(404, {"errors": [{"code": "NOT_FOUND", "message": path}]})
            return
        status, body = self.server.app.handle(
            self.command, params, self.headers.get("Authorization")
        )
        self._send(status, body)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="image-syncer test token server"')
        self.end_headers()
        self.wfile.write(data)


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return ("", "")
    return user, password


class TokenServer:
    """Threaded token server on `127.0.0.1:<free port>`.

    Attributes:
        expires_in: token lifetime in seconds (JSON `expires_in` and JWT `exp`).
        jwt_lifetime: if set, JWT `exp` is `iat + jwt_lifetime` whatever `expires_in`
            says. distribution 2.8.2 accepts tokens up to 60 s past `exp`, so use
            e.g. -120 to issue tokens the registry rejects as `invalid_token`.
        header_mode: `x5c` (certificate chain) or `kid` (libtrust key id).
        response_fields: `both`, or only `token`, or only `access_token`.
    """

    def __init__(
        self,
        signing_key: Path,
        signing_cert: Path,
        *,
        service: str = "image-syncer-test-registry",
        issuer: str = "image-syncer-test-issuer",
        username: str = "syncer",
        password: str = "syncer-secret",
        anonymous_pull_prefixes: Sequence[str] = ("public/",),
        expires_in: int = 300,
        header_mode: HeaderMode = "x5c",
        response_fields: ResponseFields = "both",
    ) -> None:
        self.service = service
        self.issuer = issuer
        self.username = username
        self._password = password
        self.anonymous_pull_prefixes = tuple(anonymous_pull_prefixes)
        self.expires_in = expires_in
        self.jwt_lifetime: int | None = None
        self.header_mode: HeaderMode = header_mode
        self.response_fields: ResponseFields = response_fields
        self._key = load_private_key(signing_key)
        cert = x509.load_pem_x509_certificate(signing_cert.read_bytes())
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._kid = libtrust_key_id(self._key.public_key())
        self._lock = threading.Lock()
        self._records: list[TokenRequest] = []
        self._failures: list[int] = []
        self._dead_tokens = 0
        self._refresh_tokens: dict[str, str] = {}
        self._restricted: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> TokenServer:
        """Bind a free loopback port and serve in a background thread."""
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.app = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("token server is not running")
        return int(self._httpd.server_address[1])

    @property
    def realm(self) -> str:
        """The token endpoint URL (`auth.token.realm`)."""
        return f"http://127.0.0.1:{self.port}/token"

    # -- test controls ---------------------------------------------------------------

    @property
    def requests(self) -> list[TokenRequest]:
        """A snapshot of every request answered so far."""
        with self._lock:
            return list(self._records)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._records.clear()

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` token requests with `status` instead of a token."""
        with self._lock:
            self._failures.extend([status] * n)

    def expire_next(self, n: int = 1) -> None:
        """Issue the next `n` tokens already expired: revoked before their first use."""
        with self._lock:
            self._dead_tokens += n

    def add_user(self, username: str, password: str, prefixes: Sequence[str]) -> None:
        """Accept another user, granted actions only on repositories under `prefixes`."""
        with self._lock:
            self._restricted[username] = (password, tuple(prefixes))

    def mint(self, subject: str, access: Sequence[tuple[str, str, Sequence[str]]]) -> str:
        """Sign a token directly, bypassing the HTTP endpoint and its policy."""
        entries = [{"type": t, "name": n, "actions": list(a)} for t, n, a in access]
        return self._sign(subject, entries, int(time.time()))

    # -- request handling --------------------------------------------------------------

    def handle(
        self, method: str, params: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Answer one token request: returns `(status, JSON body)` and records it."""
        scopes = tuple(s for value in params.get("scope", []) for s in value.split())
        grant_type = _first(params, "grant_type") if method == "POST" else None
        basic = _basic(authorization)
        with self._lock:
            injected = self._failures.pop(0) if self._failures else None
        record = TokenRequest(
            method=method,
            service=_first(params, "service"),
            scopes=scopes,
            account=_first(params, "account") or _first(params, "username"),
            grant_type=grant_type,
            basic_auth=basic is not None,
            username=None,
            status=0,
        )
        if injected is not None:
            self._record(replace(record, status=injected))
            return injected, {"errors": [{"code": "UNAVAILABLE", "message": "injected failure"}]}
        subject, ok = self._authenticate(basic, grant_type, params)
        if not ok:
            self._record(replace(record, username=subject, status=401))
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}
        granted = self._grant(scopes, subject)
        self._record(replace(record, username=subject, status=200, granted=granted))
        # GET asks for a refresh token with offline_token=true, OAuth POST with access_type=offline.
        offline = _first(params, "offline_token") == "true"
        offline = offline or _first(params, "access_type") == "offline"
        return 200, self._response(subject, granted, offline=offline)

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._records.append(request)

    def _authenticate(
        self, basic: tuple[str, str] | None, grant_type: str | None, params: dict[str, list[str]]
    ) -> tuple[str | None, bool]:
        """Return `(subject, ok)`; subject None means anonymous."""
        if grant_type == "refresh_token":
            with self._lock:
                user = self._refresh_tokens.get(_first(params, "refresh_token") or "")
            return user, user is not None
        if grant_type == "password":
            basic = (_first(params, "username") or "", _first(params, "password") or "")
        if basic is None:
            return None, True
        user, password = basic
        with self._lock:
            restricted = self._restricted.get(user)
        expected = restricted[0] if restricted else None
        if user == self.username and restricted is None:
            expected = self._password
        valid = expected is not None and secrets.compare_digest(password, expected)
        return (user or None), valid

    def _grant(
        self, scopes: Sequence[str], subject: str | None
    ) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        merged: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            if subject is None:
                public = kind == "repository" and name.startswith(self.anonymous_pull_prefixes)
                actions = tuple(a for a in actions if a == "pull") if public else ()
            elif subject in self._restricted and not name.startswith(self._restricted[subject][1]):
                actions = ()
            if actions:
                bucket = merged.setdefault((kind, name), [])
                bucket.extend(a for a in actions if a not in bucket)
        return tuple((kind, name, tuple(acts)) for (kind, name), acts in merged.items())

    def _response(
        self,
        subject: str | None,
        granted: Sequence[tuple[str, str, Sequence[str]]],
        *,
        offline: bool,
    ) -> dict[str, Any]:
        now = int(time.time())
        token = self._sign(
            subject or "", [{"type": t, "name": n, "actions": list(a)} for t, n, a in granted], now
        )
        body: dict[str, Any] = {
            "expires_in": self.expires_in,
            "issued_at": dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if self.response_fields in ("both", "token"):
            body["token"] = token
        if self.response_fields in ("both", "access_token"):
            body["access_token"] = token
        if offline and subject is not None:
            refresh = secrets.token_urlsafe(24)
            with self._lock:
                self._refresh_tokens[refresh] = subject
            body["refresh_token"] = refresh
        return body

    def _sign(self, subject: str, access: list[dict[str, Any]], now: int) -> str:
        lifetime = self.expires_in if self.jwt_lifetime is None else self.jwt_lifetime
        with self._lock:
            if self._dead_tokens:
                self._dead_tokens -= 1
                lifetime = -120  # beyond distribution's 60 s leeway
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        header = {"x5c": self._x5c} if self.header_mode == "x5c" else {"kid": self._kid}
        return encode_jwt(claims, self._key, header)
