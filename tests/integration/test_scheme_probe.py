"""Which scheme a registry speaks, against real registries (issue 15 #2, issue 11).

- An `insecure` TLS registry whose first handshake is slow must stay on
  https: the probe falls back to plain HTTP only when the port answers
  plain HTTP as a registry, and never remembers a timeout.
- TLS spoken to a plain-HTTP registry that is not `insecure` is a
  configuration problem: one attempt, a `SchemeMismatchError` naming the
  registry and `insecure: true`, no retries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from syncer_core.errors import SchemeMismatchError, TransientRegistryError
from syncer_core.registry import RegistryAccess, RegistryClient, RetryPolicy
from tests.integration.helpers import unique
from tests.support.images import build_image, push_image
from tests.support.registry_server import RegistryServer
from tests.support.slow_sockets import SlowRelay
from tests.support.sync_helpers import registry_client

pytestmark = [pytest.mark.registry]

#: Longer than the client's 5 s scheme probe, as in the report (a 6 s first handshake).
SLOW_HANDSHAKE = 6.0


@pytest.fixture
def slow_tls(registry_tls: RegistryServer) -> Iterator[SlowRelay]:
    with SlowRelay(registry_tls.host, delay=SLOW_HANDSHAKE) as relay:
        yield relay  # type: ignore[misc]


def test_a_slow_first_tls_handshake_does_not_downgrade_an_insecure_registry_to_http(
    registry_tls: RegistryServer, slow_tls: SlowRelay
) -> None:
    repo = unique("probe/app")
    image = build_image(1600, layer_sizes=(256,))
    with registry_client(registry_tls) as client:
        push_image(client, repo, "v1", image)
    # The relay's address is not in the test certificate: insecure skips that check.
    with RegistryClient(slow_tls.host, access=RegistryAccess(insecure=True)) as client:
        head = client.head_manifest(repo, "v1")
        assert head is not None and head.digest == image.digest
        assert client.list_tags(repo) == ["v1"]
        assert client.base_url.scheme == "https"
    assert slow_tls.connections >= 3  # slow https probe, plain probe, https again


def test_a_port_that_never_answers_tls_is_not_remembered_as_plain_http(
    registry_tls: RegistryServer,
) -> None:
    # Every handshake stalls: the probe fails, the port does not answer plain
    # HTTP as a registry either, so each call fails transiently and probes again.
    with SlowRelay(registry_tls.host, delay=60.0, slow_connections=100) as relay:
        client = RegistryClient(
            relay.host, access=RegistryAccess(insecure=True), retry=RetryPolicy(attempts=1)
        )
        with client, pytest.raises(TransientRegistryError, match="HTTPS probe"):
            client.ping()
        assert client._base is None  # nothing remembered


def test_tls_to_a_plain_http_registry_fails_at_once_naming_the_setting(
    registry_plain: RegistryServer,
) -> None:
    client = RegistryClient(
        registry_plain.host, access=RegistryAccess(), retry=RetryPolicy(attempts=4, base_delay=2.0)
    )
    started = time.monotonic()
    with client, pytest.raises(SchemeMismatchError) as info:
        client.head_manifest("any/app", "v1")
    elapsed = time.monotonic() - started
    assert not isinstance(info.value, TransientRegistryError)
    message = str(info.value)
    assert registry_plain.host in message and "insecure: true" in message, message
    assert info.value.speaks == "http"
    assert elapsed < 2.0, f"retried: {elapsed:.1f}s"  # a retry would wait 2 s first
