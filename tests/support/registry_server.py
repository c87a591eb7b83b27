"""Run Debian's `docker-registry` (distribution 2.8.2) on loopback for integration tests.

Four flavours: `plain` (HTTP, no auth), `htpasswd` (bcrypt Basic auth),
`tls` (HTTPS with a test CA) and `token` (Bearer tokens from a `TokenServer`).
Options: `schema1=True` accepts and serves Docker schema1 manifests
(`compatibility.schema1.enabled`); `token_realm` points a `token` registry's
challenges at another token endpoint (a stalled one, say).
Each instance gets a free `127.0.0.1` port, its own filesystem storage and a
log file whose access-log lines `requests()` parses, so tests and benchmarks
can count what a client sent.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import httpx
import pytest
import yaml
from pydantic import SecretStr

from syncer_core.registry.access import RegistryAccess
from tests.support.certs import CertPaths, generate_certs
from tests.support.token_server import TokenServer

__all__ = [
    "FLAVOURS",
    "Flavour",
    "LoggedRequest",
    "RegistryServer",
    "RegistryStartError",
    "access_for",
    "auth_entry",
    "classify_path",
    "registry_binary",
    "running_registry",
]

Flavour = Literal["plain", "htpasswd", "tls", "token"]
FLAVOURS: tuple[Flavour, ...] = get_args(Flavour)

#: A ceiling, paid only by a registry that never answers; 15 s was tight for a start on a
#: loaded 2-core machine (the suite, benchmarks and other sessions at once).
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 5.0
# gorilla/handlers combined log format, which distribution writes for every request:
# 127.0.0.1 - - [28/Nov/2026:21:50:00 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "python-httpx/0.28.1"
_ACCESS_RE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" '
    r'(?P<status>\d{3}) \S+ "[^"]*" "(?P<agent>[^"]*)"'
)
#: User-Agent of the readiness probe, so its `GET /v2/` is left out of `requests()`.
_PROBE_AGENT = "image-syncer-test-harness/readiness-probe"
_INSTANCE_HEADER = "X-Image-Syncer-Harness-Instance"
_LIVE: weakref.WeakSet[RegistryServer] = weakref.WeakSet()


class RegistryStartError(RuntimeError):
    """The registry process exited or did not answer `GET /v2/` in time."""


class LoggedRequest(NamedTuple):
    """One access-log line: compares equal to a plain `(method, path, status)` tuple."""

    method: str
    path: str
    status: int


def require_binary(name: str, package: str) -> str:
    """Locate a Debian tool; skip the test without it, unless running in CI.

    Raises:
        RuntimeError: the binary is missing and `CI` is set (CI must not skip silently).
    """
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found; install it with `apt-get install {package}`"
    if os.environ.get("CI"):
        raise RuntimeError(message)
    pytest.skip(message)


def registry_binary() -> str:
    """Locate `docker-registry` (see `require_binary`)."""
    return require_binary("docker-registry", "docker-registry")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def classify_path(path: str) -> str:
    """Name the API endpoint of a request path, for counting requests by kind.

    Returns:
        One of `ping`, `catalog`, `tags`, `manifest`, `upload`, `blob`, `other`.
    """
    route = path.split("?", 1)[0]
    if route in ("/v2", "/v2/"):
        return "ping"
    if route.startswith("/v2/_catalog"):
        return "catalog"
    for marker, kind in (
        ("/tags/list", "tags"),
        ("/manifests/", "manifest"),
        ("/blobs/uploads", "upload"),
        ("/blobs/", "blob"),
    ):
        if marker in route:
            return kind
    return "other"


class RegistryServer:
    """A `docker-registry serve` child process with generated config and temporary storage.

    Attributes:
        flavour: `plain`, `htpasswd`, `tls` or `token`.
        workdir: holds `config.yml`, `storage/`, logs and generated credentials.
        username / password: credentials for `htpasswd` and `token`, else None.
        ca_file: the CA to trust for `tls`, else None.
        token_server: the running token server of the `token` flavour.
    """

    def __init__(
        self,
        flavour: Flavour,
        workdir: Path,
        *,
        certs: CertPaths | None = None,
        username: str = "syncer",
        start_timeout: float = _START_TIMEOUT,
        schema1: bool = False,
        token_realm: str | None = None,
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown registry flavour {flavour!r}; expected one of {FLAVOURS}")
        self.flavour: Flavour = flavour
        self.workdir = workdir
        self.storage_dir = workdir / "storage"
        self.config_path = workdir / "config.yml"
        self.start_timeout = start_timeout
        self._certs = certs
        self.schema1 = schema1
        self._token_realm = token_realm
        authenticated = flavour in ("htpasswd", "token")
        self.username: str | None = username if authenticated else None
        self.password: str | None = secrets.token_urlsafe(12) if authenticated else None
        self.ca_file: Path | None = None
        self.token_server: TokenServer | None = None
        self.port: int | None = None
        self._starts = 0
        self._instance = ""
        self._log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        """`https` for the tls flavour, else `http`."""
        return "https" if self.flavour == "tls" else "http"

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of image references."""
        if self.port is None:
            raise RuntimeError("registry has not been started")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:PORT`."""
        return f"{self.scheme}://{self.host}"

    @property
    def log_path(self) -> Path:
        """Log (stdout + stderr) of the current process; a new file per (re)start."""
        if self._log_path is None:
            raise RuntimeError("registry has not been started")
        return self._log_path

    @property
    def _htpasswd_path(self) -> Path:
        return self.workdir / "htpasswd"

    @property
    def pid(self) -> int | None:
        """PID of the running process, or None."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> RegistryServer:
        """Prepare config and credentials, start the process, wait for `GET /v2/`.

        Raises:
            RegistryStartError: the process died or did not answer in time.
        """
        binary = registry_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        try:
            self._prepare_auth()
            self._launch_with_retries(binary)
        except BaseException:
            self.stop()
            raise
        _LIVE.add(self)
        return self

    def stop(self) -> None:
        """Terminate the registry by its PID (kill after a timeout) and its token server."""
        self._stop_process()
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None
        _LIVE.discard(self)

    def wipe(self) -> None:
        """Stop, delete all stored content, and restart empty on the same port."""
        self._stop_process()
        shutil.rmtree(self.storage_dir, ignore_errors=True)
        self.storage_dir.mkdir()
        self._launch_with_retries(registry_binary())

    def _prepare_auth(self) -> None:
        if self.flavour in ("tls", "token") and self._certs is None:
            self._certs = generate_certs(self.workdir / "certs")
        if self.flavour == "tls":
            assert self._certs is not None
            self.ca_file = self._certs.ca_cert
        if self.flavour == "htpasswd":
            self._write_htpasswd()
        if self.flavour == "token" and self.token_server is None:
            assert self._certs is not None and self.username and self.password
            self.token_server = TokenServer(
                self._certs.token_key,
                self._certs.token_cert,
                username=self.username,
                password=self.password,
            ).start()

    def _write_htpasswd(self) -> None:
        assert self.username and self.password
        command = ["htpasswd", "-Bbn", self.username, self.password]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        self._htpasswd_path.write_text(result.stdout.strip() + "\n")

    def _launch_with_retries(self, binary: str) -> None:
        # A free port found by bind(0) can be taken before the registry binds it;
        # pick another unless the port is pinned (wipe() must keep its port).
        pinned = self.port is not None
        for attempt in range(3):
            if not pinned:
                self.port = free_port()
            self._instance = secrets.token_hex(8)
            self._write_config()
            try:
                self._launch(binary)
                return
            except RegistryStartError:
                if attempt == 2 or "address already in use" not in self._log_tail():
                    raise
                time.sleep(0.2)

    def _launch(self, binary: str) -> None:
        self._starts += 1
        self._log_path = self.workdir / f"registry-{self._starts}.log"
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except RegistryStartError:
            self._stop_process()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        probe = httpx.Client(
            verify=self.ssl_context(),
            timeout=1.0,
            trust_env=False,
            headers={"User-Agent": _PROBE_AGENT},
        )
        with probe as client:
            while time.monotonic() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise RegistryStartError(
                        f"docker-registry ({self.flavour}) exited with {self._proc.returncode}:\n"
                        f"{self._log_tail()}"
                    )
                try:
                    response = client.get(f"{self.url}/v2/")
                    if response.headers.get(_INSTANCE_HEADER) == self._instance:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RegistryStartError(
            f"docker-registry ({self.flavour}) did not answer GET {self.url}/v2/ within "
            f"{self.start_timeout:.0f}s:\n{self._log_tail()}"
        )

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()

    def _log_tail(self, lines: int = 30) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def _write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def config(self) -> dict[str, Any]:
        """The registry configuration for the current port and flavour."""
        http: dict[str, Any] = {
            "addr": self.host,
            # Fixed, so upload `_state` tokens survive wipe(); also silences a warning.
            "secret": "image-syncer-test-secret",
            # Lets the readiness probe tell this process from whatever else holds the port.
            "headers": {_INSTANCE_HEADER: [self._instance]},
        }
        certs, tokens = self._certs, self.token_server
        if self.flavour == "tls" and certs:
            http["tls"] = {"certificate": str(certs.server_cert), "key": str(certs.server_key)}
        auth: dict[str, Any] = {}
        if self.flavour == "htpasswd":
            auth["htpasswd"] = {"realm": "image-syncer-test", "path": str(self._htpasswd_path)}
        if self.flavour == "token" and certs and tokens:
            auth["token"] = {
                "realm": self._token_realm or tokens.realm,
                "service": tokens.service,
                "issuer": tokens.issuer,
                "rootcertbundle": str(certs.token_bundle),
            }
        log = {"level": "info", "formatter": "text", "accesslog": {"disabled": False}}
        storage = {
            "filesystem": {"rootdirectory": str(self.storage_dir)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        }
        config: dict[str, Any] = {"version": "0.1", "log": log, "storage": storage, "http": http}
        if self.schema1:
            # distribution signs the schema1 manifests it serves with a key it makes at start.
            config["compatibility"] = {"schema1": {"enabled": True}}
        return {**config, "auth": auth} if auth else config

    def ssl_context(self) -> ssl.SSLContext | bool:
        """`verify=` value for httpx: a context trusting the test CA for tls, else True."""
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_file))

    def requests(self, *, settle: float = 0.1) -> list[LoggedRequest]:
        """Requests served since the last (re)start, parsed from the access log.

        The access-log line is written after the response, so this first waits
        until the log has stopped growing for `settle` seconds (at most 2 s).

        Returns:
            `(method, path-with-query, status)` entries in log order.
        """
        self._wait_log_settled(settle)
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = _ACCESS_RE.match(line)
            if match and match["agent"] != _PROBE_AGENT:
                entries.append(LoggedRequest(match["method"], match["path"], int(match["status"])))
        return entries

    def request_counts(self, *, settle: float = 0.1) -> Counter[tuple[str, str]]:
        """Count served requests by `(method, classify_path(path))`."""
        return Counter((r.method, classify_path(r.path)) for r in self.requests(settle=settle))

    def _wait_log_settled(self, settle: float) -> None:
        deadline = time.monotonic() + 2.0
        size = self.log_path.stat().st_size
        while time.monotonic() < deadline:
            time.sleep(settle)
            current = self.log_path.stat().st_size
            if current == size:
                return
            size = current


@contextmanager
def running_registry(
    flavour: Flavour, workdir: Path, *, certs: CertPaths | None = None, **options: Any
) -> Iterator[RegistryServer]:
    """Start a registry and always stop it (by PID) when the block exits.

    `options` are `RegistryServer` keywords (`schema1`, `token_realm`).
    """
    server = RegistryServer(flavour, workdir, certs=certs, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def access_for(server: RegistryServer, *, credentials: bool = True) -> RegistryAccess:
    """The `RegistryAccess` our client needs to reach a test registry.

    Args:
        server: a started registry.
        credentials: include the user and password (htpasswd/token flavours).

    Returns:
        plain/htpasswd/token: `insecure=True` (plain HTTP) plus credentials;
        tls: `ca_file` set to the test CA.
    """
    user = server.username if credentials else None
    password = SecretStr(server.password) if credentials and server.password else None
    if server.flavour == "tls":
        return RegistryAccess(ca_file=server.ca_file, username=user, password=password)
    return RegistryAccess(insecure=True, username=user, password=password)


def auth_entry(server: RegistryServer, *, password: str | None = None) -> dict[str, Any]:
    """The auth-file entry for a registry (or a proxy in front of it); plain HTTP is `insecure`."""
    entry: dict[str, Any] = {}
    if server.flavour == "tls":
        entry["ca_file"] = str(server.ca_file)
    else:
        entry["insecure"] = True
    if server.username:
        entry["username"] = server.username
        entry["password"] = password if password is not None else server.password
    return entry


@atexit.register
def _stop_leftovers() -> None:
    # Safety net for interrupted sessions: fixtures normally stop every server.
    for server in list(_LIVE):
        server.stop()
