"""Named registries of the zoo: `profile("dockerhub").proxy(upstream)` is a Docker Hub.

Each profile is a `FaultProxy` configured with the knobs that registry is
known for (size limits, refused mounts, resumable sessions, `Quirks`), in
front of a real `docker-registry`. `flavour` is the auth the real registry
uses, to pick the registry behind it (`token` or `htpasswd`). Each builder's
docstring cites where the behaviour is documented or reported; the knobs
themselves are described in `relay.py`, `uploads.py` and `quirks.py`.
Keywords given to `proxy()` override the profile's (e.g. more fault rules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.support.registry_server import Flavour
from tests.support.zoo.cdn import CdnOrigin
from tests.support.zoo.quirks import Quirks
from tests.support.zoo.relay import FaultProxy
from tests.support.zoo.rules import FaultRule

__all__ = ["PROFILES", "Profile", "profile"]

MiB = 1024 * 1024
Builder = Callable[..., FaultProxy]


@dataclass(frozen=True)
class Profile:
    """A named registry: how to build its proxy, and the auth its real counterpart uses."""

    name: str
    flavour: Flavour
    build: Builder

    @property
    def sources(self) -> str:
        """The builder's docstring: the behaviours and where they come from."""
        return self.build.__doc__ or ""

    def proxy(self, upstream: str, **options: Any) -> FaultProxy:
        """An unstarted proxy in front of the registry at `upstream` (use it with `with`)."""
        return self.build(upstream, **options)


PROFILES: dict[str, Profile] = {}


def _register(name: str, flavour: Flavour) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        PROFILES[name] = Profile(name, flavour, build)
        return build

    return register


def profile(name: str) -> Profile:
    """The profile called `name` (one of `PROFILES`)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"no zoo profile {name!r}; known: {sorted(PROFILES)}") from None


def _proxy(upstream: str, defaults: dict[str, Any], options: dict[str, Any]) -> FaultProxy:
    return FaultProxy(upstream, **{**defaults, **options})


@_register("dockerhub", "token")
def dockerhub(upstream: str, *, ratelimit: int = 5000, **options: Any) -> FaultProxy:
    """Docker Hub.

    - Token realm on another origin (auth.docker.io): the token registry
      behind it has its token server on another port.
    - Blob GETs → 307 to a CDN origin that ignores `Range` (200 with the
      whole blob, as registry.k8s.io's CDN, containers/container-libs PR
      #1114) and refuses any request carrying `Authorization` with 400 "Only
      one auth mechanism allowed" (S3 presigned URLs; skopeo #1223 context).
    - Tag lists 100 per page with a `Link` (Docker Hub's page size).
    - `ratelimit-limit` / `ratelimit-remaining` headers on manifest GETs
      (docs.docker.com "Docker Hub usage and limits"); `ratelimit` is the
      window's size (large by default, so the gate never slows a test).
    - No catalog (`/v2/_catalog` unsupported on Docker Hub).
    - Cross-repository mounts refused: a plain upload session is opened
      instead (go-containerregistry #1741).
    """
    cdn = CdnOrigin(upstream, honour_range=False, name="zoo-dockerhub-cdn")
    quirks = Quirks(catalog=False, tag_page=100, ratelimit=ratelimit, storage=cdn)
    return _proxy(upstream, {"refuse_mounts": 202, "quirks": quirks}, options)


@_register("ghcr", "token")
def ghcr(upstream: str, **options: Any) -> FaultProxy:
    """GitHub Container Registry.

    - A `PATCH` body over 4 MiB → 416 (ocx-sh/ocx PR #237). Reports
      conflict (ocync's notes say GHCR's multi-PATCH uploads break and send
      one PATCH); monolithic `PUT`s are accepted whole, so both work.
    """
    return _proxy(upstream, {"patch_limit": 4 * MiB}, options)


@_register("chunked-only", "token")
def chunked_only(upstream: str, *, cap: int = 3 * MiB, **options: Any) -> FaultProxy:
    """A registry that takes uploads only as `PATCH` chunks, up to a cap it does not announce.

    - A monolithic `PUT` with a body → 413 (distribution-spec lets a
      registry refuse it; regclient and crane fall back to chunks).
    - `PATCH`es over `cap` bytes → 416, and no `OCI-Chunk-Min-Length` or
      other hint of the cap: the client has to find a size that works.
    """
    return _proxy(upstream, {"monolithic_limit": 0, "patch_limit": cap}, options)


@_register("acr", "token")
def acr(upstream: str, **options: Any) -> FaultProxy:
    """Azure Container Registry.

    - A monolithic upload over 20 MB → 413 (Harbor #23015, ACR in front).
    - An upload session cannot be resumed after a reset:
      `BLOB_UPLOAD_INVALID` (Azure SDK #29738); this is what distribution
      2.8 does with a cut request body (`resumable_uploads=False`).
    """
    return _proxy(upstream, {"monolithic_limit": 20_000_000}, options)


@_register("ecr", "htpasswd")
def ecr(upstream: str, *, repositories: Iterable[str] = (), **options: Any) -> FaultProxy:
    """Amazon Elastic Container Registry.

    - HTTP Basic with a 12 h token as the password (`aws ecr
      get-login-password`): the htpasswd registry behind it.
    - Pushing to a repository that does not exist → 404 `NAME_UNKNOWN`,
      "The repository with name '...' does not exist in the registry with
      id '...'" (regclient #869): repositories must be created first; only
      `repositories` exist.
    - `n` above 1000 on a tag list → 400 (the API's `maxResults` bound).
    - A `PATCH` answers 201, and its `Range` stays at the first chunk's end
      while the bytes are stored (aws/containers-roadmap #2831).
    """
    quirks = Quirks(repositories=frozenset(repositories), max_tag_page=1000, stale_patch_range=True)
    return _proxy(upstream, {"quirks": quirks}, options)


@_register("quay", "token")
def quay(upstream: str, *, seed: int = 12, **options: Any) -> FaultProxy:
    """Quay.io.

    - 429 without `Retry-After` (containers/image #618): a tenth of the
      requests, each retry let through.
    - A mount without `from` fails (Quay needs the source repository).
    """
    too_many = FaultRule(kinds=("429",), rate=0.1, max_streak=1, limit=8)
    quirks = Quirks(mount_needs_from=True)
    return _proxy(upstream, {"rules": [too_many], "seed": seed, "quirks": quirks}, options)


@_register("harbor", "token")
def harbor(upstream: str, *, projects: Iterable[str] = (), **options: Any) -> FaultProxy:
    """Harbor.

    - A mount from a project that does not exist → 401 instead of 202
      (Harbor #17097); only `projects` exist (pushes are not checked: the
      registry behind has no projects).
    - Blob GETs redirected to presigned storage URLs (S3 / OSS backends)
      that honour `Range` and reject `Authorization` (400, S3's "Only one
      auth mechanism allowed").
    - Schema1 manifests rejected (Harbor 2.x dropped Docker schema1).
    """
    storage = CdnOrigin(upstream, honour_range=True, name="zoo-harbor-storage")
    quirks = Quirks(projects=frozenset(projects), reject_schema1=True, storage=storage)
    return _proxy(upstream, {"quirks": quirks}, options)


@_register("gar", "token")
def gar(upstream: str, **options: Any) -> FaultProxy:
    """Google Artifact Registry.

    - No chunked uploads: an upload `PATCH` → 405 (ocync's notes on GAR).
    - Mounts never fulfilled: 202 with a plain upload session (ocync's notes).
    """
    quirks = Quirks(no_patch=True)
    return _proxy(upstream, {"refuse_mounts": 202, "quirks": quirks}, options)
