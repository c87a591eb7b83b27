r"""Image references: parse, normalise, and rebuild `registry/repository[:tag][@digest]`.

The grammar (distribution `reference/reference.go`):

```
reference        := name [ ":" tag ] [ "@" digest ]
name             := [domain '/'] path-component ['/' path-component]*
domain           := host [':' port-number]
host             := domain-name | IPv4address | '[' IPv6address ']'
domain-name      := domain-component ['.' domain-component]*
domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
port-number      := /[0-9]+/
path-component   := alpha-numeric [separator alpha-numeric]*
alpha-numeric    := /[a-z0-9]+/
separator        := /[_.]|__|[-]*/
tag              := /[\w][\w.-]{0,127}/
digest           := algorithm ":" hex      (sha256 / sha512 only, see digest.py)
```

Normalisation (as docker and regclient do it): the first component is a
registry only if it contains `.` or `:` or is `localhost`; otherwise the
registry is Docker Hub. `index.docker.io` and `registry-1.docker.io` become
`docker.io`; a single-component Docker Hub repository gets `library/`.
Traffic for `docker.io` goes to `registry-1.docker.io` (`Reference.api_host`).
A missing tag stays missing: whether that means "latest" or "all tags" is the
caller's decision (the images file uses it for "all tags").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from syncer_core.digest import is_digest
from syncer_core.errors import InvalidReferenceError

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_API",
    "Reference",
    "is_valid_tag",
    "looks_like_registry",
    "normalise_registry",
    "split_repository",
]

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])"
# `\Z`, not `$`: `$` also matches before a trailing newline ("a\n/b" must fail).
_DOMAIN_RE = re.compile(rf"^{_HOST}(?::[0-9]+)?\Z")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*\Z")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}\Z", re.ASCII)


def is_valid_tag(tag: str) -> bool:
    """Tell whether `tag` matches the tag grammar."""
    return bool(_TAG_RE.match(tag))


def normalise_registry(registry: str) -> str:
    """Map Docker Hub aliases to `docker.io`; lowercase nothing else."""
    return DOCKER_HUB if registry.lower() in _HUB_ALIASES else registry


def looks_like_registry(component: str) -> bool:
    """Whether a name's first component is a registry host (Docker's rule), not a path."""
    return "." in component or ":" in component or component == "localhost"


def split_repository(name: str) -> tuple[str, str]:
    """Split `[registry/]path` into a normalised `(registry, repository)`.

    Args:
        name: a name without tag or digest, e.g. `nginx`, `quay.io/coreos/etcd`.

    Returns:
        The registry (`docker.io` for Docker Hub) and repository path
        (`library/nginx` for a one-component Docker Hub name).

    Raises:
        InvalidReferenceError: the name breaks the grammar.
    """
    if not name:
        raise InvalidReferenceError(name, "empty name")
    first, sep, rest = name.partition("/")
    if sep and looks_like_registry(first):
        registry, path = first, rest
        if not _DOMAIN_RE.match(registry):
            raise InvalidReferenceError(name, f"invalid registry {registry!r}")
    else:
        registry, path = DOCKER_HUB, name
    registry = normalise_registry(registry)
    if not path:
        raise InvalidReferenceError(name, "missing repository path")
    for component in path.split("/"):
        if not _PATH_COMPONENT_RE.match(component):
            reason = (
                "repository must be lowercase"
                if component.lower() != component and _PATH_COMPONENT_RE.match(component.lower())
                else f"invalid path component {component!r}"
            )
            raise InvalidReferenceError(name, reason)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(path) > _MAX_NAME_LENGTH:
        raise InvalidReferenceError(name, f"repository longer than {_MAX_NAME_LENGTH} characters")
    return registry, path


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed, normalised image reference. Immutable; modifiers return copies.

    Attributes:
        registry: normalised host[:port] (`docker.io` for Docker Hub).
        repository: the repository path (`library/nginx`).
        tag: the tag, or None.
        digest: the digest (`sha256:...`), or None.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, value: str) -> Reference:
        """Parse and normalise a reference string.

        Args:
            value: e.g. `nginx`, `nginx:1.25`, `localhost:5000/a/b@sha256:...`.

        Returns:
            The normalised reference; `tag` is None when none was written.

        Raises:
            InvalidReferenceError: with the offending string and the reason.
        """
        if not isinstance(value, str):
            raise InvalidReferenceError(repr(value), "not a string")
        if value != value.strip() or not value:
            raise InvalidReferenceError(value, "empty or surrounded by whitespace")
        name, digest = value, None
        if "@" in value:
            name, _, digest = value.partition("@")
            if not is_digest(digest):
                raise InvalidReferenceError(value, f"invalid digest {digest!r}")
        tag = None
        last_slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > last_slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not is_valid_tag(tag):
                raise InvalidReferenceError(value, f"invalid tag {tag!r}")
        try:
            registry, repository = split_repository(name)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(value, exc.reason) from None
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """`registry/repository`, the key used for auth lookup."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host to connect to (`registry-1.docker.io` for Docker Hub)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def identifier(self) -> str:
        """What goes after `/manifests/`: the digest if set, else the tag (or `latest`)."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str | None) -> Reference:
        """Return a copy with this tag (and no digest)."""
        if tag is not None and not is_valid_tag(tag):
            raise InvalidReferenceError(f"{self.name}:{tag}", f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str | None) -> Reference:
        """Return a copy pinned to this digest (and no tag)."""
        if digest is not None and not is_digest(digest):
            raise InvalidReferenceError(f"{self.name}@{digest}", f"invalid digest {digest!r}")
        return replace(self, tag=None, digest=digest)

    def same_registry(self, other: Reference) -> bool:
        """Tell whether both references live on the same registry."""
        return self.registry == other.registry

    def same_repository(self, other: Reference) -> bool:
        """Tell whether both references name the same repository."""
        return self.name == other.name

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
