"""How to reach one registry: credentials and transport security.

This is the value the configuration layer resolves for an image (auth file,
docker config.json) and the registry client consumes. Secrets are
`SecretStr`, so they never show in a repr, a log line or an error.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

__all__ = ["RegistryAccess"]


class RegistryAccess(BaseModel):
    """Credentials and TLS options for one registry (or registry namespace).

    Attributes:
        username: user for Basic auth or for the Bearer token request.
        password: its password (or a registry access token used as password).
        token: a static bearer token sent as-is (e.g. from `identitytoken`
            flows or pre-issued registry tokens); wins over username/password.
        identity_token: an OAuth2 refresh token (docker config `identitytoken`),
            exchanged at the token realm with `grant_type=refresh_token`.
        insecure: skip TLS verification and allow plain HTTP (image-syncer's
            meaning of `insecure`).
        ca_file: a PEM bundle to verify the registry's certificate with.
        chunk_size: upload blobs in `PATCH` chunks of at most this many bytes
            (auth file `chunk_size`, ours); None: monolithic first, chunks
            only if the registry refuses (`registry.negotiation`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    identity_token: SecretStr | None = None
    insecure: bool = False
    ca_file: Path | None = None
    chunk_size: int | None = None

    @property
    def has_basic_credentials(self) -> bool:
        """Both a username and a non-empty password are present."""
        return bool(self.username) and bool(self.password and self.password.get_secret_value())

    def secrets(self) -> list[str]:
        """Every secret value held, for redaction of foreign error text."""
        values = [self.password, self.token, self.identity_token]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
