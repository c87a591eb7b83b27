"""Credentials never go unencrypted to a token realm, `insecure` or not (real registry).

The token flavour's realm is the token server's `http://127.0.0.1:<port>`.
Reached directly over plain HTTP, that is the registry's own host: allowed.
Behind a TLS-terminating proxy (a self-signed HTTPS registry the auth file
marks `insecure: true`), the same http realm would carry the password in
clear text: refused before any token request.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest

from syncer_core.errors import InsecureRealmError
from syncer_core.registry import RegistryClient
from tests.support.certs import CertPaths
from tests.support.registry_server import RegistryServer, access_for
from tests.support.zoo import FaultProxy

pytestmark = [pytest.mark.registry]


def _server_tls(certs: CertPaths) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    return context


def test_insecure_https_registry_never_sends_credentials_to_its_http_realm(
    fresh_registry: Callable[..., RegistryServer], registry_certs: CertPaths
) -> None:
    registry = fresh_registry("token")
    assert registry.token_server is not None and registry.password
    access = access_for(registry)  # insecure: true, with the user's password
    with FaultProxy(registry.host, tls=_server_tls(registry_certs)) as proxy:
        registry.token_server.clear_requests()
        with RegistryClient(proxy.host, access=access) as client:
            with pytest.raises(InsecureRealmError, match="https registry, http realm") as info:
                client.head_manifest("app/one", "v1")
            assert client.base_url.scheme == "https"
    assert registry.password not in str(info.value)
    assert registry.token_server.requests == []  # nothing reached the http realm


def test_plain_http_registry_uses_its_http_realm_on_its_own_host(
    fresh_registry: Callable[..., RegistryServer],
) -> None:
    registry = fresh_registry("token")
    assert registry.token_server is not None
    with RegistryClient(registry.host, access=access_for(registry)) as client:
        assert client.head_manifest("app/one", "v1") is None  # authorised, just absent
        assert client.base_url.scheme == "http"
    assert [r.status for r in registry.token_server.requests] == [200]
