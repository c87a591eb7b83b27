"""A scripted fake registry for protocol tests, after regclient's `internal/reqresp`.

A test lists the exchanges it expects, in order: `(method, URL)` and the
canned response (or a transport exception to raise). The fake answers each
request with the next entry, fails on any request that does not match it,
and `assert_done()` fails if entries were left unconsumed:

```python
mock = MockRegistry()
mock.expect("GET", "/v2/", status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
mock.expect("GET", "/v2/", check=lambda call: call.header("authorization").startswith("Basic "))
client = mock.client(access=RegistryAccess(username="u", password="p"))
client.ping()
mock.assert_done()
```

Relative URLs are resolved against `MockRegistry.base_url`
(`https://registry.example/`); an absolute URL names another origin (a CDN,
a token realm). When the expected URL carries a query string, the request's
query must hold exactly the same parameters (order ignored, repeats
counted); without one, the query is not checked.

The transport is an `httpx.MockTransport` that consumes request bodies the
way a socket does, by iterating `request.stream` once, instead of calling
`request.read()`: a generator body therefore stays non-replayable, as it is
against a real server. The bytes sent are kept in `Call.body`. Nothing here
proves that a body was *streamed* (the fake still collects it); that is the
real-registry tier's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from syncer_core.registry import ClientOptions, RegistryAccess, RegistryClient, RetryPolicy

__all__ = ["REGISTRY", "Call", "Expectation", "MockRegistry", "bearer_challenge"]

#: The registry host every protocol test talks to (never resolved: nothing leaves the process).
REGISTRY = "registry.example"

Responder = Callable[["Call"], httpx.Response]
Check = Callable[["Call"], None]


def bearer_challenge(
    realm: str = "https://auth.example/token",
    *,
    service: str | None = "registry.example",
    scope: str | None = None,
    error: str | None = None,
) -> dict[str, str]:
    """`WWW-Authenticate` headers of a distribution-style Bearer challenge."""
    params = [f'realm="{realm}"']
    params += [f'{k}="{v}"' for k, v in (("service", service), ("scope", scope)) if v]
    if error:
        params.append(f'error="{error}"')
    return {"WWW-Authenticate": "Bearer " + ",".join(params)}


@dataclass
class Call:
    """One request the fake received, with the body bytes that were sent."""

    request: httpx.Request
    body: bytes

    @property
    def method(self) -> str:
        """The request method."""
        return self.request.method

    @property
    def url(self) -> httpx.URL:
        """The full request URL."""
        return self.request.url

    @property
    def params(self) -> httpx.QueryParams:
        """The query parameters."""
        return self.request.url.params

    def header(self, name: str) -> str | None:
        """A request header, or None when absent."""
        return self.request.headers.get(name)

    def __str__(self) -> str:
        return f"{self.method} {self.url}"


@dataclass
class Expectation:
    """One scripted exchange: what must be asked and what is answered."""

    method: str
    url: httpx.URL
    respond: Responder | BaseException
    check: Check | None = None
    match_query: bool = False

    def mismatch(self, call: Call) -> str | None:
        """Why `call` is not this exchange, or None when it is."""
        got, want = call.url, self.url
        if call.method != self.method:
            return f"method {call.method} != {self.method}"
        if (got.scheme, got.host, got.port, got.path) != (
            want.scheme,
            want.host,
            want.port,
            want.path,
        ):
            return f"URL {got} != {want}"
        if self.match_query and sorted(got.params.multi_items()) != sorted(
            want.params.multi_items()
        ):
            return f"query {got.query.decode()!r} != {want.query.decode()!r}"
        return None

    def __str__(self) -> str:
        return f"{self.method} {self.url}"


class _SocketLikeMockTransport(httpx.MockTransport):
    """A `MockTransport` that consumes the request body once, as a real connection does."""

    def __init__(self, registry: MockRegistry):
        super().__init__(lambda request: registry.handle(request, request.read()))
        self._registry = registry

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = b"".join(request.stream)  # type: ignore[arg-type]
        return self._registry.handle(request, body)


@dataclass
class MockRegistry:
    """An ordered script of expected requests and canned responses.

    Attributes:
        base_url: what relative expectation URLs are resolved against.
        calls: every request received, in order (matched or not).
        failures: descriptions of requests that broke the script.
    """

    base_url: httpx.URL = field(default_factory=lambda: httpx.URL(f"https://{REGISTRY}/"))
    calls: list[Call] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _script: list[Expectation] = field(default_factory=list)
    _position: int = 0

    def expect(
        self,
        method: str,
        url: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        raises: BaseException | None = None,
        respond: Responder | None = None,
        check: Check | None = None,
    ) -> MockRegistry:
        """Append one expected exchange; returns self for chaining.

        Args:
            method: the expected HTTP method.
            url: a path (resolved against `base_url`) or an absolute URL;
                with a query string the query must match exactly.
            status: the status of the canned response.
            headers: its headers.
            json: a JSON body (sets `Content-Type: application/json`).
            content: a raw body; an iterator is served lazily, chunk by chunk.
            raises: raise this (e.g. `httpx.ConnectError`) instead of answering.
            respond: build the response from the `Call` instead.
            check: extra assertions on the `Call`, run before answering.
        """
        target = self.base_url.join(url)
        responder: Responder | BaseException
        if raises is not None:
            responder = raises
        elif respond is not None:
            responder = respond
        else:

            def responder(call: Call) -> httpx.Response:
                if json is not None:
                    return httpx.Response(status, headers=headers, json=json)
                return httpx.Response(status, headers=headers, content=content)

        self._script.append(Expectation(method, target, responder, check, "?" in url))
        return self

    def handle(self, request: httpx.Request, body: bytes) -> httpx.Response:
        """Answer `request` with the next scripted exchange (the transport's handler)."""
        call = Call(request, body)
        self.calls.append(call)
        if self._position >= len(self._script):
            self._fail(f"unexpected request #{len(self.calls)}: {call} (script exhausted)")
        expected = self._script[self._position]
        if reason := expected.mismatch(call):
            self._fail(f"request #{len(self.calls)} {call} does not match {expected}: {reason}")
        self._position += 1
        if expected.check is not None:
            try:
                expected.check(call)
            except AssertionError as exc:
                self._fail(f"request #{len(self.calls)} {call}: check failed: {exc}")
        if isinstance(expected.respond, BaseException):
            raise expected.respond
        return expected.respond(call)

    def _fail(self, message: str) -> None:
        # Raised into httpx (and so into the code under test), and remembered
        # in case that code swallows it: `assert_done()` reports it again.
        self.failures.append(message)
        raise AssertionError(message)

    @property
    def remaining(self) -> list[Expectation]:
        """Expectations not consumed yet."""
        return self._script[self._position :]

    def assert_done(self) -> None:
        """Fail if a request broke the script or a scripted exchange never happened."""
        assert not self.failures, "; ".join(self.failures)
        assert not self.remaining, "expected requests never made: " + ", ".join(
            str(e) for e in self.remaining
        )

    def transport(self) -> httpx.MockTransport:
        """A transport answering from this script."""
        return _SocketLikeMockTransport(self)

    def client(
        self,
        registry: str = REGISTRY,
        *,
        access: RegistryAccess | None = None,
        options: ClientOptions | None = None,
        retry: RetryPolicy | None = None,
    ) -> RegistryClient:
        """A `RegistryClient` wired to this script; no retries unless `retry` is given."""
        return RegistryClient(
            registry,
            access=access,
            options=options,
            retry=retry or RetryPolicy(attempts=1),
            transport=self.transport(),
        )
