"""The auth file (`--auth`): registry[/namespace] keys → credentials, looked up by longest prefix.

```yaml
quay.io:                    # a registry
  username: "${QUAY_USER}"  # ${VAR} / $VAR expanded from the environment
  password: "$QUAY_PASS"
quay.io/coreos:             # a namespace (any path prefix); longer keys win
  token: "$QUAY_TOKEN"      # ours: a static bearer token
localhost:5000:
  insecure: true            # skip TLS verification, allow plain HTTP
  ca_file: certs/ca.pem     # ours: CA bundle, relative to the auth file
ghcr.io:
  chunk_size: 4194304       # ours: upload in PATCH chunks of at most 4 MiB
```

Keys are normalised like references (Docker Hub aliases are one registry,
a key without a host is on Docker Hub); no `library/` is added, so
`docker.io/myteam` stays a namespace. A key matches `registry/repository` when
it equals it or is a prefix ending at a `/`; the longest match wins (the
original picked a random one, see the behaviour spec §7.1 #1-2). Without a
match, or when the winning entry has no usable credentials, docker's
config.json is asked; `insecure`/`ca_file`/`chunk_size` of the winning entry always apply.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    RootModel,
    SecretStr,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syncer_core.config.dockerconfig import DockerConfig
from syncer_core.config.files import describe_validation_error, expand_env, load_document
from syncer_core.config.secretrefs import resolve_secret, secret_block_name
from syncer_core.errors import ConfigError, InvalidReferenceError
from syncer_core.reference import (
    DOCKER_HUB,
    Reference,
    looks_like_registry,
    normalise_registry,
    split_repository,
)
from syncer_core.registry.access import RegistryAccess
from syncer_core.registry.negotiation import MIN_CHUNK

__all__ = [
    "AuthConfig",
    "AuthEntry",
    "AuthFile",
    "load_auth_file",
    "normalise_auth_key",
    "parse_auth_section",
]

_FIELDS = "username, password, token, insecure, ca_file, chunk_size"
#: The largest `chunk_size` accepted: a chunk is held in memory while it is sent.
_MAX_CHUNK = 1024 * 1024 * 1024


class AuthEntry(BaseModel):
    """One auth-file entry. Secrets are `SecretStr`; strings are env-expanded.

    Attributes:
        username: user for Basic auth / token requests.
        password: its password (used only together with a username).
        token: a static bearer token (our addition).
        insecure: skip TLS verification and allow plain HTTP.
        ca_file: a PEM CA bundle for this registry (our addition).
        chunk_size: upload blobs in `PATCH` chunks of at most this many bytes,
            from the first blob on (our addition; without it uploads are
            monolithic until the registry refuses one).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    insecure: StrictBool = False
    ca_file: Path | None = None
    chunk_size: StrictInt | None = None

    @field_validator("chunk_size", mode="after")
    @classmethod
    def _check_chunk_size(cls, value: int | None) -> int | None:
        if value is not None and not MIN_CHUNK <= value <= _MAX_CHUNK:
            raise ValueError(
                f"{value} is out of range: use a byte count from {MIN_CHUNK} (256 KiB) "
                f"to {_MAX_CHUNK} (1 GiB), e.g. 4194304 for 4 MiB"
            )
        return value

    @field_validator("username", mode="after")
    @classmethod
    def _expand_username(cls, value: str | None, info: ValidationInfo) -> str | None:
        env = _context_env(info)
        return expand_env(value, env) if value is not None and env is not None else value

    @field_validator("password", "token", mode="after")
    @classmethod
    def _expand_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            secret_block_name(value.get_secret_value())  # rejects malformed references
        env = _context_env(info)
        if value is None or env is None:
            return value
        return SecretStr(expand_env(value.get_secret_value(), env))

    @field_validator("ca_file", mode="after")
    @classmethod
    def _resolve_ca_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        path = value.expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if not path.is_file():
            raise ValueError(f"CA file {str(path)!r} does not exist or is not a file")
        return path

    @model_validator(mode="after")
    def _check_combination(self) -> AuthEntry:
        if self.password is not None and self.token is not None:
            raise ValueError("set either 'password' or 'token', not both")
        if self.password is not None and self.username is None:
            raise ValueError("'password' needs a 'username'")
        return self

    @property
    def has_credentials(self) -> bool:
        """A token, or both username and password, are non-empty (after expansion)."""
        if self.token is not None and self.token.get_secret_value():
            return True
        password = self.password.get_secret_value() if self.password is not None else ""
        return bool(self.username) and bool(password)

    def to_access(self, key: str = "") -> RegistryAccess:
        """Return this entry as the `RegistryAccess` the registry client takes.

        Secret block references are resolved here, at lookup time (inside the
        worker), never when the file is loaded.
        """
        if not self.has_credentials:
            return RegistryAccess(
                insecure=self.insecure, ca_file=self.ca_file, chunk_size=self.chunk_size
            )
        uses_token = self.token is not None and bool(self.token.get_secret_value())
        return RegistryAccess(
            username=self.username,
            password=None if uses_token else resolve_secret(self.password, where=f"{key}.password"),
            token=resolve_secret(self.token, where=f"{key}.token") if uses_token else None,
            insecure=self.insecure,
            ca_file=self.ca_file,
            chunk_size=self.chunk_size,
        )


def _context_env(info: ValidationInfo) -> Mapping[str, str] | None:
    context = info.context or {}
    env = context.get("env")
    return env if isinstance(env, Mapping) else None


class AuthFile(RootModel[dict[str, AuthEntry]]):
    """The auth file as written: key (registry[/namespace]) → entry."""

    model_config = ConfigDict(frozen=True)


def normalise_auth_key(key: str) -> str:
    """Normalise an auth key to `registry[/path]` (no `library/` is added).

    Args:
        key: e.g. `quay.io`, `index.docker.io/team`, `myteam` (Docker Hub).

    Returns:
        The normalised key, e.g. `docker.io/team`.

    Raises:
        InvalidReferenceError: the key is not a registry or repository prefix.
    """
    text = key.strip().rstrip("/")
    first, _, rest = text.partition("/")
    if looks_like_registry(first):
        split_repository(f"{first}/{rest or 'x'}")  # validates host and path
        registry, path = normalise_registry(first.lower()), rest
    else:
        split_repository(f"{DOCKER_HUB}/{text}")
        registry, path = DOCKER_HUB, text
    return f"{registry}/{path}" if path else registry


class AuthConfig:
    """Loaded credentials: `lookup(reference)` resolves what to use for an image.

    Args:
        entries: auth entries by the key as written.
        file: the auth file they came from (for messages), if any.
        docker_config: fallback for registries without credentials here;
            None disables the fallback.
    """

    def __init__(
        self,
        entries: Mapping[str, AuthEntry] | None = None,
        *,
        file: str | None = None,
        docker_config: DockerConfig | None = None,
    ):
        self.file = file
        self.entries: dict[str, AuthEntry] = dict(entries or {})
        self.docker_config = docker_config
        self._by_key: dict[str, str] = {}
        for raw in self.entries:
            try:
                normal = normalise_auth_key(raw)
            except InvalidReferenceError as exc:
                raise ConfigError(f"invalid auth key: {exc.reason}", file=file, key=raw) from None
            if normal in self._by_key:
                raise ConfigError(
                    f"same registry/namespace as key {self._by_key[normal]!r} ({normal})",
                    file=file,
                    key=raw,
                )
            self._by_key[normal] = raw

    def __repr__(self) -> str:
        return f"AuthConfig(file={self.file!r}, keys={sorted(self.entries)!r})"

    def match(self, reference: Reference) -> str | None:
        """Return the auth key (as written) that applies to `reference`, or None.

        The longest normalised key equal to `registry/repository`, or a prefix
        of it ending at a path boundary, wins.
        """
        name = f"{reference.registry.lower()}/{reference.repository}"
        best: str | None = None
        for normal in self._by_key:
            if (name == normal or name.startswith(normal + "/")) and (
                best is None or len(normal) > len(best)
            ):
                best = normal
        return self._by_key[best] if best is not None else None

    def _access(self, entry: AuthEntry, key: str | None) -> RegistryAccess:
        try:
            return entry.to_access(key or "")
        except ConfigError as error:
            raise ConfigError(str(error), file=self.file) from None

    def lookup(self, reference: Reference) -> RegistryAccess:
        """Resolve credentials and TLS options for an image.

        Args:
            reference: the image (tag and digest are ignored).

        Returns:
            The winning auth entry's access; if it has no credentials (or
            nothing matched), docker config.json credentials with the entry's
            `insecure`/`ca_file`; else anonymous `RegistryAccess()`.

        Raises:
            ConfigError: docker's config.json is malformed or a credential
                helper failed (the message names helper and registry only).
        """
        key = self.match(reference)
        entry = self.entries[key] if key is not None else AuthEntry()
        if entry.has_credentials or self.docker_config is None:
            return self._access(entry, key)
        fallback = self.docker_config.credentials(reference.registry)
        if fallback is None:
            return self._access(entry, key)
        return fallback.model_copy(
            update={
                "insecure": entry.insecure,
                "ca_file": entry.ca_file,
                "chunk_size": entry.chunk_size,
            }
        )


def _auth_error(exc: ValidationError, file: str | None) -> ConfigError:
    loc, message = describe_validation_error(exc)[0]
    key = loc[0] if loc else None
    if len(loc) < 2:
        if message == "must be a mapping":
            message = f"entry must be a mapping with fields {_FIELDS}"
    elif message == "unknown field":
        message = f"unknown field {loc[1]!r} (allowed: {_FIELDS})"
    else:
        message = f"field {'.'.join(loc[1:])!r}: {message}"
    return ConfigError(message, file=file, key=key)


def parse_auth_section(
    data: Mapping[str, Any],
    *,
    file: str | None,
    env: Mapping[str, str] | None,
    base_dir: Path | None = None,
    docker_config: DockerConfig | None = None,
) -> AuthConfig:
    """Validate an auth mapping (auth file, or legacy `auth:` section).

    Args:
        data: key → entry mapping as decoded.
        file: the file name for messages.
        env: environment for `${VAR}` expansion; None disables expansion.
        base_dir: directory relative `ca_file` paths start from.
        docker_config: the config.json fallback (None: no fallback).

    Returns:
        The loaded `AuthConfig`.

    Raises:
        ConfigError: naming the file, key and problem (never a secret).
    """
    context = {"env": env, "base_dir": base_dir}
    try:
        parsed = AuthFile.model_validate(dict(data), context=context)
    except ValidationError as exc:
        raise _auth_error(exc, file) from None
    return AuthConfig(parsed.root, file=file, docker_config=docker_config)


def load_auth_file(
    path: str | os.PathLike[str] | None,
    *,
    env: Mapping[str, str] | None = None,
    docker_config: DockerConfig | None = None,
    use_docker_config: bool = True,
) -> AuthConfig:
    """Load an `--auth` file (YAML or JSON by suffix).

    Args:
        path: the auth file; None means "no --auth": only docker's
            config.json (if enabled) provides credentials.
        env: environment for expansion (and the docker config location);
            defaults to `os.environ`.
        docker_config: the config.json fallback; defaults to the one docker
            would use for `env`. It is read lazily, on the first lookup.
        use_docker_config: False disables the config.json fallback.

    Returns:
        The loaded `AuthConfig`.

    Raises:
        ConfigError: the file is unreadable, malformed or has a bad entry.
    """
    environ = dict(os.environ if env is None else env)
    if docker_config is None and use_docker_config:
        docker_config = DockerConfig.from_env(environ)
    if path is None:
        return AuthConfig(docker_config=docker_config)
    data = load_document(path)
    return parse_auth_section(
        data,
        file=str(path),
        env=environ,
        base_dir=Path(path).parent,
        docker_config=docker_config,
    )
