"""Building the httpx client for one registry: TLS, timeouts, pooling, scheme.

`insecure` keeps image-syncer's meaning: skip certificate verification *and*
allow plain HTTP. HTTPS is always tried first; plain HTTP only as a fallback
for an insecure registry whose HTTPS attempt fails at the connection level
and whose port answers plain HTTP as a registry (`RegistryClient.base_url`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import httpx

from syncer_core.errors import ConfigError
from syncer_core.registry.access import RegistryAccess

__all__ = ["USER_AGENT", "ClientOptions", "build_http_client", "ssl_verification"]

USER_AGENT = "image-syncer/0.1 (+python-httpx)"


@dataclass(frozen=True)
class ClientOptions:
    """Transport knobs of a registry client.

    Attributes:
        max_connections: connections (hence concurrent requests) per registry.
        connect_timeout: seconds to establish a connection.
        read_timeout: seconds of silence tolerated while reading a response.
        write_timeout: seconds a write may block (slow destinations).
        pool_timeout: seconds to wait for a free connection before failing.
        chunk_size: bytes per read when streaming blobs.
        upload_chunk_size: 0 streams a blob in one PUT; > 0 uploads it in
            PATCH chunks of this size (for registries or proxies that need it).
        max_resumes: how many times one blob's download, and separately its
            upload, may be resumed after a cut before the copy fails.
    """

    max_connections: int = 16
    connect_timeout: float = 30.0
    read_timeout: float = 300.0
    write_timeout: float = 300.0
    pool_timeout: float = 600.0
    chunk_size: int = 1024 * 1024
    upload_chunk_size: int = 0
    max_resumes: int = 32


def ssl_verification(access: RegistryAccess) -> ssl.SSLContext | bool:
    """The `verify=` value for httpx: False when insecure, the CA bundle if set."""
    if access.insecure:
        return False
    context = ssl.create_default_context()
    if access.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(access.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA bundle: {exc}", file=str(access.ca_file)) from None
    return context


def build_http_client(
    access: RegistryAccess,
    options: ClientOptions,
    auth: httpx.Auth,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """Create the pooled, HTTP/1.1 httpx client for one registry.

    Args:
        access: credentials and TLS settings of the registry.
        options: timeouts, pool size.
        auth: the registry's `RegistryAuth`.
        transport: a replacement transport (tests use `httpx.MockTransport`).
    """
    timeout = httpx.Timeout(
        connect=options.connect_timeout,
        read=options.read_timeout,
        write=options.write_timeout,
        pool=options.pool_timeout,
    )
    limits = httpx.Limits(
        max_connections=options.max_connections,
        max_keepalive_connections=options.max_connections,
        keepalive_expiry=60.0,
    )
    return httpx.Client(
        auth=auth,
        verify=ssl_verification(access),
        timeout=timeout,
        limits=limits,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=True,
        transport=transport,
    )
