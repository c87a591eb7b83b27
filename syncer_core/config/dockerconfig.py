"""Credentials from docker's `config.json`: `auths` entries and credential helpers.

The file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; a
missing file means "no credentials". It is read on the first lookup, not when
the auth file is loaded, and credential helpers run only when a registry
without auth-file credentials is looked up (docker CLI `credentials/native_store.go`
protocol: `docker-credential-<name> get`, stdin = server URL, stdout =
`{"Username": ..., "Secret": ...}`, username `<token>` = identity token).

Precedence for one registry: `credHelpers[registry]`, then an `auths` entry
with usable credentials, then `credsStore`. Results (and failures) are cached
per registry for the life of the object, so a helper runs at most once.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from syncer_core.config.files import describe_validation_error, parse_document
from syncer_core.errors import ConfigError
from syncer_core.reference import DOCKER_HUB, normalise_registry
from syncer_core.registry.access import RegistryAccess

__all__ = [
    "DEFAULT_HELPER_TIMEOUT",
    "DOCKER_HUB_SERVER",
    "DockerAuthEntry",
    "DockerConfig",
    "DockerConfigFile",
    "docker_config_path",
    "registry_host",
    "run_credential_helper",
]

#: The server URL docker uses for Docker Hub in config files and helpers.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
DEFAULT_HELPER_TIMEOUT = 30.0

_HELPER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class DockerAuthEntry(BaseModel):
    """One `auths` entry. Docker writes more fields (`email`, ...); they are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    auth: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    identitytoken: SecretStr | None = None
    registrytoken: SecretStr | None = None


class DockerConfigFile(BaseModel):
    """The parts of `config.json` that hold credentials (other settings are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    auths: dict[str, DockerAuthEntry] = Field(default_factory=dict)
    cred_helpers: dict[str, str] = Field(default_factory=dict, alias="credHelpers")
    creds_store: str | None = Field(default=None, alias="credsStore")


def docker_config_path(env: Mapping[str, str]) -> Path:
    """Return `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`."""
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".docker" / "config.json"


def registry_host(key: str) -> str:
    """Normalise a config.json key (`https://index.docker.io/v1/`, `quay.io`) to a registry."""
    host = key.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme) :]
            break
    return normalise_registry(host.split("/", 1)[0].lower())


def _server_url(registry: str) -> str:
    return DOCKER_HUB_SERVER if registry == DOCKER_HUB else registry


def _helper_output(stdout: str, program: str, registry: str) -> RegistryAccess | None:
    problem = f"credential helper {program} returned unusable output for registry {registry}"
    try:
        data = json.loads(stdout)
    except ValueError:
        raise ConfigError(f"{problem}: not JSON") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{problem}: not a JSON object")
    username, secret = data.get("Username"), data.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str):
        raise ConfigError(f"{problem}: Username and Secret must be strings")
    if not secret:
        return None
    if username == "<token>":
        return RegistryAccess(identity_token=SecretStr(secret))
    return RegistryAccess(username=username or None, password=SecretStr(secret))


def _invoke(
    executable: str, program: str, registry: str, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(  # fixed argv, no shell
            [executable, "get"],
            input=_server_url(registry),
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=dict(env),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"credential helper {program} timed out after {timeout:g}s for registry {registry}"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"credential helper {program} could not run for registry {registry}: {exc.strerror}"
        ) from None


def run_credential_helper(
    name: str,
    registry: str,
    *,
    env: Mapping[str, str],
    timeout: float = DEFAULT_HELPER_TIMEOUT,
) -> RegistryAccess | None:
    """Ask `docker-credential-<name>` for a registry's credentials.

    Args:
        name: the helper name from `credHelpers`/`credsStore`.
        registry: the normalised registry (`docker.io` asks for Docker Hub's URL).
        env: the environment (its `PATH` locates the helper; it is passed on).
        timeout: seconds before the helper is killed.

    Returns:
        The credentials, or None when the helper has none for this registry.

    Raises:
        ConfigError: the helper is missing, fails, times out or prints
            garbage. The message names the helper and registry, never output.
    """
    program = f"docker-credential-{name}"
    if not _HELPER_NAME_RE.match(name):
        raise ConfigError(f"invalid credential helper name {name!r} for registry {registry}")
    executable = shutil.which(program, path=env.get("PATH", os.defpath))
    if executable is None:
        raise ConfigError(f"credential helper {program} for registry {registry} is not on PATH")
    proc = _invoke(executable, program, registry, env, timeout)
    if proc.returncode != 0:
        if "credentials not found" in proc.stdout.lower():
            return None
        raise ConfigError(
            f"credential helper {program} failed for registry {registry} "
            f"(exit status {proc.returncode})"
        )
    return _helper_output(proc.stdout, program, registry)


def _entry_access(entry: DockerAuthEntry, *, file: str, key: str) -> RegistryAccess | None:
    username, password = entry.username, entry.password
    if entry.auth is not None and entry.auth.get_secret_value():
        try:
            decoded = base64.b64decode(entry.auth.get_secret_value(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise ConfigError(
                "field 'auth' is not base64 of 'username:password'", file=file, key=key
            )
        username, password = user, SecretStr(secret)
    if entry.identitytoken is not None and entry.identitytoken.get_secret_value():
        return RegistryAccess(username=username or None, identity_token=entry.identitytoken)
    if entry.registrytoken is not None and entry.registrytoken.get_secret_value():
        return RegistryAccess(token=entry.registrytoken)
    if username and password is not None and password.get_secret_value():
        return RegistryAccess(username=username, password=password)
    return None


class DockerConfig:
    """Lazy, cached credential source over one docker `config.json`.

    Thread-safe: lookups may come from several copy workers at once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        env: Mapping[str, str] | None = None,
        helper_timeout: float = DEFAULT_HELPER_TIMEOUT,
    ):
        self.path = Path(path) if path is not None else None
        self._env = dict(os.environ if env is None else env)
        self._helper_timeout = helper_timeout
        self._lock = threading.Lock()
        self._file: DockerConfigFile | None = None
        self._cache: dict[str, RegistryAccess | ConfigError | None] = {}

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, helper_timeout: float = DEFAULT_HELPER_TIMEOUT
    ) -> DockerConfig:
        """Use the config.json docker itself would use for this environment."""
        environ = dict(os.environ if env is None else env)
        return cls(docker_config_path(environ), env=environ, helper_timeout=helper_timeout)

    def __repr__(self) -> str:
        return f"DockerConfig(path={str(self.path)!r})"

    def credentials(self, registry: str) -> RegistryAccess | None:
        """Return the credentials docker would use for `registry`, or None.

        Args:
            registry: a registry host, normalised like `Reference.registry`.

        Raises:
            ConfigError: the config file is malformed, or a helper failed.
        """
        registry = registry_host(registry)
        with self._lock:
            if registry not in self._cache:
                try:
                    self._cache[registry] = self._resolve(registry)
                except ConfigError as exc:
                    self._cache[registry] = exc
            cached = self._cache[registry]
        if isinstance(cached, ConfigError):
            raise cached.with_traceback(None)  # don't pile up frames on re-raise
        return cached

    def _resolve(self, registry: str) -> RegistryAccess | None:
        config = self._load()
        helpers = {registry_host(key): name for key, name in config.cred_helpers.items()}
        if registry in helpers:
            return self._run_helper(helpers[registry], registry)
        key, entry = self._auth_entry(config, registry)
        if entry is not None:
            access = _entry_access(entry, file=str(self.path), key=key)
            if access is not None:
                return access
        if config.creds_store:
            return self._run_helper(config.creds_store, registry)
        return None

    @staticmethod
    def _auth_entry(config: DockerConfigFile, registry: str) -> tuple[str, DockerAuthEntry | None]:
        matches = [key for key in config.auths if registry_host(key) == registry]
        # A key written exactly as the host wins over URL forms of it.
        matches.sort(key=lambda k: (k != registry, k))
        return (matches[0], config.auths[matches[0]]) if matches else ("", None)

    def _run_helper(self, name: str, registry: str) -> RegistryAccess | None:
        return run_credential_helper(name, registry, env=self._env, timeout=self._helper_timeout)

    def _load(self) -> DockerConfigFile:
        if self._file is None:
            self._file = self._read()
        return self._file

    def _read(self) -> DockerConfigFile:
        if self.path is None or not self.path.is_file():
            return DockerConfigFile()
        file = str(self.path)
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            raise ConfigError("cannot read docker config file", file=file) from None
        if not text.strip():
            return DockerConfigFile()
        data = parse_document(text, "json", file=file)
        try:
            return DockerConfigFile.model_validate(data)
        except ValidationError as exc:
            loc, message = describe_validation_error(exc)[0]
            key = ".".join(loc) if loc else None
            raise ConfigError(message, file=file, key=key) from None
