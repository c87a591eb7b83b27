"""Parse `WWW-Authenticate` header values into challenges (pure, no I/O).

The grammar is RFC 7235 §4.1 (with §2.1 for `challenge`, RFC 7230 §3.2.6 for
`token` / `quoted-string` and §7 for the `#` list rule):

```
WWW-Authenticate = 1#challenge
challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
auth-param       = token BWS "=" BWS ( token / quoted-string )
token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
quoted-string    = DQUOTE *( qdtext / quoted-pair ) DQUOTE
```

A registry answers 401 with, per the distribution token spec
(https://distribution.github.io/distribution/spec/auth/token/):

```
Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
       scope="repository:samalba/my-app:pull,push",error="insufficient_scope"
```

The commas inside the quoted `scope` and the several challenges in one value
are why a naive `split(",")` is wrong. Header values come from servers we do
not control, so the parser is lenient: it never raises on any string, skips
what it cannot read up to the next list comma, and returns the challenges it
could make sense of (possibly none). Scheme and parameter names are
case-insensitive (RFC 7235 §2.1) and are lowercased; values are kept as sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Challenge", "parse_www_authenticate"]

# RFC 7230 §3.2.6 tchar; the scheme and every parameter name is a token.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A token68 must be the whole rest of its list element, else it is an auth-param.
_TOKEN68_RE = re.compile(r"([A-Za-z0-9\-._~+/]+=*)[ \t]*(?=,|\Z)")
# Lenient: servers send unquoted URLs (`realm=https://...`), which are no tokens.
_BARE_VALUE_RE = re.compile(r'[^\s,"]+')
_WHITESPACE = " \t"


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge, such as `Bearer realm="...",service="..."`.

    Attributes:
        scheme: the auth scheme, lowercased (`"bearer"`, `"basic"`).
        params: the auth-params, names lowercased, values unquoted and
            unescaped. Treat as read-only.
        token68: the token68 form some schemes use instead of params
            (`Negotiate abc==`), or None.
    """

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict, hash=False)
    token68: str | None = None

    def __post_init__(self) -> None:
        # Normalise here too, so hand-built challenges compare equal to parsed ones.
        object.__setattr__(self, "scheme", self.scheme.lower())
        params = {key.lower(): value for key, value in self.params.items()}
        object.__setattr__(self, "params", params)

    @property
    def realm(self) -> str | None:
        """The `realm` parameter: for Bearer, the token endpoint URL."""
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        """The `service` parameter to pass back to the token endpoint."""
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        """The space-separated `scope` parameter as a list (empty if absent)."""
        return self.params.get("scope", "").split()

    @property
    def error(self) -> str | None:
        """The `error` parameter, e.g. `"insufficient_scope"` (RFC 6750 §3)."""
        return self.params.get("error")


@dataclass
class _Builder:
    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    def build(self) -> Challenge:
        return Challenge(self.scheme, self.params, self.token68)


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Parse every challenge of one or more `WWW-Authenticate` header values.

    Args:
        values: the header values in order, e.g.
            `response.headers.get_list("www-authenticate")`. A single `str`
            is taken as one value, not as a sequence of characters.

    Returns:
        The challenges in the order sent; empty when nothing parses. A
        parameter repeated within one challenge keeps its first value.
    """
    if isinstance(values, str):
        values = [values]
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(builder.build() for builder in _parse_value(value))
    return challenges


def _parse_value(text: str) -> list[_Builder]:
    """Parse one header value; unreadable list elements are skipped."""
    found: list[_Builder] = []
    current: _Builder | None = None
    pos, end = 0, len(text)
    while True:
        pos = _skip(text, pos, _WHITESPACE + ",")
        if pos >= end:
            return found
        token = _TOKEN_RE.match(text, pos)
        if token is None:
            pos = _skip_element(text, pos)
            continue
        name = token.group().lower()
        after = _skip(text, token.end(), _WHITESPACE)
        if after < end and text[after] == "=":
            if current is None:  # a parameter before any scheme
                pos = _skip_element(text, pos)
                continue
            value, pos = _read_value(text, _skip(text, after + 1, _WHITESPACE))
            if value is None:
                pos = _skip_element(text, pos)
                continue
            current.params.setdefault(name, value)
            continue
        current = _Builder(name)
        found.append(current)
        pos = after
        if after > token.end() and (token68 := _TOKEN68_RE.match(text, after)):
            current.token68 = token68.group(1)
            pos = token68.end()


def _read_value(text: str, pos: int) -> tuple[str | None, int]:
    """Read a quoted-string or a bare value at `pos`; None if there is none."""
    if pos < len(text) and text[pos] == '"':
        return _read_quoted(text, pos)
    bare = _BARE_VALUE_RE.match(text, pos)
    if bare is None:
        return None, pos
    return bare.group(), bare.end()


def _read_quoted(text: str, pos: int) -> tuple[str | None, int]:
    """Read the quoted-string opening at `pos`, undoing quoted-pairs (RFC 7230 §3.2.6).

    An unterminated string swallows the rest of the value, so it yields None
    and the end position rather than a guess.
    """
    chars: list[str] = []
    index = pos + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(chars), index + 1
        if char == "\\" and index + 1 < len(text):
            index += 1
            char = text[index]
        chars.append(char)
        index += 1
    return None, len(text)


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _skip_element(text: str, pos: int) -> int:
    """Skip to the next list comma outside a quoted-string (or the end)."""
    while pos < len(text) and text[pos] != ",":
        if text[pos] == '"':
            _, pos = _read_quoted(text, pos)
        else:
            pos += 1
    return pos
