"""Helpers shared by the flow and reliability tiers: run files, our client, reading tags back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from syncer_core import mediatypes as mt
from syncer_core.errors import NotFoundError
from syncer_core.registry import RegistryClient
from tests.support.images import build_image, push_image
from tests.support.registry_server import RegistryServer, access_for

__all__ = [
    "registry_client",
    "seed_signed_schema1",
    "subprocess_env",
    "tag_digests",
    "write_document",
]


def write_document(path: Path, data: Any) -> Path:
    """Write YAML or JSON by suffix; a string is written as it is."""
    if isinstance(data, str):
        path.write_text(data)
    elif path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2))
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextmanager
def registry_client(server: RegistryServer) -> Iterator[RegistryClient]:
    """Our own client for a test registry (with its credentials), closed afterwards.

    It talks to the registry itself, never through a fault proxy.
    """
    with RegistryClient(server.host, access=access_for(server)) as client:
        yield client


def _tags(client: RegistryClient, repository: str) -> list[str]:
    try:
        return client.list_tags(repository)
    except NotFoundError:  # distribution: NAME_UNKNOWN for a repository without tags
        return []


def tag_digests(server: RegistryServer, repository: str) -> dict[str, str]:
    """`tag -> manifest digest` of a repository, read through the registry API ({} if none)."""
    with registry_client(server) as client:
        found: dict[str, str] = {}
        for tag in _tags(client, repository):
            head = client.head_manifest(repository, tag)
            assert head is not None and head.digest is not None, f"{repository}:{tag}"
            found[tag] = head.digest
        return found


def subprocess_env(prefect_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for `python flows/sync.py`: its own Prefect home and API.

    No `PREFECT_*` setting of this process leaks in (the test harness's API
    among them), so the run starts its own temporary API on `prefect_home`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "DEFAULT_REGISTRY"):
        env.pop(name, None)
        env.pop(name.lower(), None)
    docker_config = prefect_home.parent / "docker-config"
    docker_config.mkdir(exist_ok=True)
    env.update(
        PREFECT_HOME=str(prefect_home),
        # The temporary API must start even on a loaded CI machine (default: 20 s).
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        DOCKER_CONFIG=str(docker_config),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def seed_signed_schema1(server: RegistryServer, repository: str, tag: str) -> str:
    """Push a schema2 image, have distribution sign it as schema1, store that under `tag`.

    `server` must be a plain registry started with `schema1=True`.

    Returns:
        The registry's digest of the schema1 manifest (its payload's).
    """
    image = build_image(1800, layer_sizes=(700, 300))
    with registry_client(server) as client:
        push_image(client, repository, "schema2", image)
    url = f"{server.url}/v2/{repository}/manifests"
    signed = httpx.get(f"{url}/schema2", headers={"Accept": mt.DOCKER_SCHEMA1_SIGNED})
    assert signed.headers["content-type"] == mt.DOCKER_SCHEMA1_SIGNED
    pushed = httpx.put(
        f"{url}/{tag}", content=signed.content, headers={"Content-Type": mt.DOCKER_SCHEMA1_SIGNED}
    )
    assert pushed.status_code == 201, pushed.text
    return str(pushed.headers["docker-content-digest"])
