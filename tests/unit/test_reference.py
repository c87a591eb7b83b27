"""Reference parsing and normalisation, after regclient `types/ref/ref_test.go` and docker."""

from __future__ import annotations

import dataclasses
import re

import pytest

from syncer_core.errors import InvalidReferenceError
from syncer_core.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    Reference,
    is_valid_tag,
    normalise_registry,
    split_repository,
)

SHA256 = "sha256:15f840677a5e245d9ea199eb9b026b1539208a5183621dced7b469f6aa678115"
SHA512 = "sha512:" + "0123456789abcdef" * 8


@pytest.mark.parametrize(
    ("value", "registry", "repository", "tag", "digest"),
    [
        # Docker Hub short names and aliases
        pytest.param("nginx", "docker.io", "library/nginx", None, None, id="hub-official"),
        pytest.param(
            "nginx:1.25", "docker.io", "library/nginx", "1.25", None, id="hub-official-tag"
        ),
        pytest.param("library/nginx", "docker.io", "library/nginx", None, None, id="hub-library"),
        pytest.param("user/app:v1", "docker.io", "user/app", "v1", None, id="hub-user"),
        pytest.param("user/team/app", "docker.io", "user/team/app", None, None, id="hub-deep"),
        pytest.param(
            "docker.io/nginx", "docker.io", "library/nginx", None, None, id="docker.io-adds-library"
        ),
        pytest.param(
            "docker.io/library/nginx:latest",
            "docker.io",
            "library/nginx",
            "latest",
            None,
            id="docker.io-full",
        ),
        pytest.param(
            "docker.io/user/app", "docker.io", "user/app", None, None, id="docker.io-user"
        ),
        pytest.param(
            "index.docker.io/library/alpine",
            "docker.io",
            "library/alpine",
            None,
            None,
            id="index.docker.io",
        ),
        pytest.param(
            "index.docker.io/alpine",
            "docker.io",
            "library/alpine",
            None,
            None,
            id="index.docker.io-adds-library",
        ),
        pytest.param(
            "registry-1.docker.io/library/alpine",
            "docker.io",
            "library/alpine",
            None,
            None,
            id="registry-1.docker.io",
        ),
        pytest.param(
            "Docker.IO/alpine",
            "docker.io",
            "library/alpine",
            None,
            None,
            id="hub-alias-case-insensitive",
        ),
        pytest.param(
            "docker.io/library",
            "docker.io",
            "library/library",
            None,
            None,
            id="hub-repo-named-library",
        ),
        # localhost and IPs
        pytest.param(
            "localhost/group/image:v42", "localhost", "group/image", "v42", None, id="localhost"
        ),
        pytest.param(
            "localhost:5000/group/image:v42",
            "localhost:5000",
            "group/image",
            "v42",
            None,
            id="localhost-port",
        ),
        pytest.param(
            "localhost/image", "localhost", "image", None, None, id="localhost-no-library"
        ),
        # Docker semantics: without a slash, `localhost` is an image name (and 5000 a tag).
        pytest.param(
            "localhost",
            "docker.io",
            "library/localhost",
            None,
            None,
            id="bare-localhost-is-hub-repo",
        ),
        pytest.param(
            "localhost:5000",
            "docker.io",
            "library/localhost",
            "5000",
            None,
            id="bare-localhost-port-is-tag",
        ),
        pytest.param(
            "127.0.0.1:5000/image:v42", "127.0.0.1:5000", "image", "v42", None, id="ipv4-port"
        ),
        pytest.param("192.168.1.10/ns/app", "192.168.1.10", "ns/app", None, None, id="ipv4"),
        pytest.param("[::1]:5000/repo:tag", "[::1]:5000", "repo", "tag", None, id="ipv6-port"),
        pytest.param("[2001:db8::1]/ns/repo", "[2001:db8::1]", "ns/repo", None, None, id="ipv6"),
        # other registries
        pytest.param(
            "example.com/group/image:v42", "example.com", "group/image", "v42", None, id="fqdn"
        ),
        pytest.param(
            "example.com:5000/g/roup/image:a",
            "example.com:5000",
            "g/roup/image",
            "a",
            None,
            id="fqdn-port",
        ),
        pytest.param(
            "EXAMPLE.com/image", "EXAMPLE.com", "image", None, None, id="registry-case-kept"
        ),
        pytest.param(
            "my-registry.example.com:443/app",
            "my-registry.example.com:443",
            "app",
            None,
            None,
            id="hyphenated-host",
        ),
        pytest.param(
            "registry:5000/group/image",
            "registry:5000",
            "group/image",
            None,
            None,
            id="short-host-with-port",
        ),
        pytest.param("quay.io/a/b/c/d/e/f", "quay.io", "a/b/c/d/e/f", None, None, id="deep-path"),
        pytest.param(
            "e.xample.co/g-r.o__u_p/im----age:a",
            "e.xample.co",
            "g-r.o__u_p/im----age",
            "a",
            None,
            id="separators",
        ),
        pytest.param(
            "a__b/c--d/e.f/g_h", "docker.io", "a__b/c--d/e.f/g_h", None, None, id="separators-each"
        ),
        pytest.param("123/456", "docker.io", "123/456", None, None, id="numeric-components"),
        # tags
        pytest.param(
            "nginx:" + "a" * 128, "docker.io", "library/nginx", "a" * 128, None, id="tag-128-chars"
        ),
        pytest.param(
            "nginx:_private",
            "docker.io",
            "library/nginx",
            "_private",
            None,
            id="tag-leading-underscore",
        ),
        pytest.param(
            "nginx:1.25.3-alpine",
            "docker.io",
            "library/nginx",
            "1.25.3-alpine",
            None,
            id="tag-leading-digit",
        ),
        pytest.param(
            "nginx:V42-BETA", "docker.io", "library/nginx", "V42-BETA", None, id="tag-uppercase"
        ),
        pytest.param(
            "nginx:a..b--c__",
            "docker.io",
            "library/nginx",
            "a..b--c__",
            None,
            id="tag-inner-dots-dashes",
        ),
        # digests
        pytest.param(
            f"nginx@{SHA256}", "docker.io", "library/nginx", None, SHA256, id="digest-sha256"
        ),
        pytest.param(f"quay.io/a/b@{SHA512}", "quay.io", "a/b", None, SHA512, id="digest-sha512"),
        pytest.param(
            f"nginx:1.25@{SHA256}",
            "docker.io",
            "library/nginx",
            "1.25",
            SHA256,
            id="tag-and-digest",
        ),
        pytest.param(
            f"localhost:5000/a/b:t@{SHA256}",
            "localhost:5000",
            "a/b",
            "t",
            SHA256,
            id="port-tag-digest",
        ),
        pytest.param(
            f"registry:5000/group/image@{SHA256}",
            "registry:5000",
            "group/image",
            None,
            SHA256,
            id="port-digest",
        ),
        # length limit is on the repository path
        pytest.param(
            "quay.io/" + "a" * 255, "quay.io", "a" * 255, None, None, id="repository-255-chars"
        ),
    ],
)
def test_parse_valid(
    value: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(value)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param(" ", "whitespace", id="blank"),
        pytest.param(" nginx", "whitespace", id="leading-space"),
        pytest.param("nginx ", "whitespace", id="trailing-space"),
        pytest.param("nginx\n", "whitespace", id="trailing-newline"),
        pytest.param("\tnginx", "whitespace", id="leading-tab"),
        pytest.param("ngi nx", "invalid path component", id="inner-space"),
        pytest.param("a\n/b", "invalid path component", id="newline-ends-component"),
        pytest.param("quay.io\n/b", "invalid registry", id="newline-ends-registry"),
        pytest.param(f"a:b\n@{SHA256}", "invalid tag", id="newline-ends-tag"),
        # case
        pytest.param("Nginx", "lowercase", id="uppercase-official"),
        pytest.param("library/nginX", "lowercase", id="uppercase-hub"),
        pytest.param("docker.io/Upper/Case/Repo:tag", "lowercase", id="uppercase-path"),
        pytest.param("quay.io/org/App", "lowercase", id="uppercase-other-registry"),
        # path components and separators
        pytest.param("a-_b", "invalid path component", id="dash-underscore"),
        pytest.param("a_-b", "invalid path component", id="underscore-dash"),
        pytest.param("a___b", "invalid path component", id="triple-underscore"),
        pytest.param("a..b", "invalid path component", id="double-dot"),
        pytest.param("project/-image", "invalid path component", id="leading-dash"),
        pytest.param("project/image-", "invalid path component", id="trailing-dash"),
        pytest.param("project/_image", "invalid path component", id="leading-underscore"),
        pytest.param("project/.image", "invalid path component", id="leading-dot"),
        pytest.param("project/star*", "invalid path component", id="bad-char"),
        pytest.param("caf\u00e9", "invalid path component", id="non-ascii"),
        pytest.param("nginx/", "invalid path component", id="trailing-slash"),
        pytest.param("/nginx", "invalid path component", id="leading-slash"),
        pytest.param("a//b", "invalid path component", id="double-slash"),
        pytest.param("nginx:tag:more", "invalid path component", id="two-colons"),
        pytest.param("quay.io/", "missing repository path", id="registry-only-slash"),
        # registry
        pytest.param("-docker.io/project/image", "invalid registry", id="host-leading-dash"),
        pytest.param("docker-.io/project/image", "invalid registry", id="host-trailing-dash"),
        pytest.param("a_b.com/image", "invalid registry", id="host-underscore"),
        pytest.param("localhost:/repo", "invalid registry", id="empty-port"),
        pytest.param("quay.io:http/repo", "invalid registry", id="non-numeric-port"),
        pytest.param("[::1/repo", "invalid registry", id="unclosed-ipv6"),
        # tags
        pytest.param("nginx:", "invalid tag", id="empty-tag"),
        pytest.param("nginx:" + "a" * 129, "invalid tag", id="tag-129-chars"),
        pytest.param("nginx:-lead", "invalid tag", id="tag-leading-dash"),
        pytest.param("nginx:.lead", "invalid tag", id="tag-leading-dot"),
        pytest.param("project/image:tag^1", "invalid tag", id="tag-bad-char"),
        pytest.param("nginx:t\u00e4g", "invalid tag", id="tag-non-ascii"),
        # digests
        pytest.param("nginx@", "invalid digest", id="empty-digest"),
        pytest.param("nginx@sha256:12345", "invalid digest", id="sha256-short"),
        pytest.param("nginx@sha256:" + "a" * 65, "invalid digest", id="sha256-long"),
        pytest.param("nginx@sha512:" + "a" * 64, "invalid digest", id="sha512-short"),
        pytest.param("nginx@sha256:" + "A" * 64, "invalid digest", id="uppercase-hex"),
        pytest.param("nginx@SHA256:" + "a" * 64, "invalid digest", id="uppercase-algorithm"),
        pytest.param("nginx@sha256:" + "g" * 64, "invalid digest", id="non-hex"),
        pytest.param(
            "nginx@md5:d41d8cd98f00b204e9800998ecf8427e", "invalid digest", id="unknown-algorithm"
        ),
        pytest.param("nginx@sha384:" + "a" * 96, "invalid digest", id="sha384-unsupported"),
        pytest.param(f"nginx@{SHA256}@{SHA256}", "invalid digest", id="two-digests"),
        pytest.param(f"nginx@{SHA256}:tag", "invalid digest", id="tag-after-digest"),
        # length
        pytest.param("quay.io/" + "a" * 256, "longer than 255", id="repository-256-chars"),
        pytest.param(
            "/".join(["abcdefghij"] * 24), "longer than 255", id="name-over-255-components"
        ),
    ],
)
def test_parse_invalid(value: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError, match=re.escape(reason)) as info:
        Reference.parse(value)
    assert info.value.reference == value
    assert isinstance(info.value, ValueError)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(InvalidReferenceError, match="not a string"):
        Reference.parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param("nginx", "docker.io/library/nginx", id="hub-short"),
        pytest.param("index.docker.io/user/app:v1", "docker.io/user/app:v1", id="hub-alias"),
        pytest.param(f"nginx@{SHA256}", f"docker.io/library/nginx@{SHA256}", id="digest"),
        pytest.param(f"q.io/a:b@{SHA256}", f"q.io/a:b@{SHA256}", id="tag-and-digest"),
        pytest.param("[::1]:5000/r:t", "[::1]:5000/r:t", id="ipv6"),
    ],
)
def test_str_is_canonical(value: str, text: str) -> None:
    assert str(Reference.parse(value)) == text


@pytest.mark.parametrize(
    ("value", "api_host"),
    [
        pytest.param("nginx", DOCKER_HUB_API, id="hub"),
        pytest.param("index.docker.io/a/b", DOCKER_HUB_API, id="hub-alias"),
        pytest.param("quay.io/a/b", "quay.io", id="quay"),
        pytest.param("localhost:5000/a", "localhost:5000", id="localhost"),
    ],
)
def test_api_host(value: str, api_host: str) -> None:
    assert Reference.parse(value).api_host == api_host


@pytest.mark.parametrize(
    ("value", "identifier"),
    [
        pytest.param("nginx", "latest", id="none-means-latest"),
        pytest.param("nginx:1.25", "1.25", id="tag"),
        pytest.param(f"nginx@{SHA256}", SHA256, id="digest"),
        pytest.param(f"nginx:1.25@{SHA256}", SHA256, id="digest-wins"),
    ],
)
def test_identifier(value: str, identifier: str) -> None:
    assert Reference.parse(value).identifier == identifier


def test_name_is_registry_and_repository() -> None:
    assert Reference.parse("nginx:1").name == "docker.io/library/nginx"


def test_with_tag_returns_copy_without_digest() -> None:
    ref = Reference.parse(f"quay.io/a/b:old@{SHA256}")
    new = ref.with_tag("new")
    assert new == Reference("quay.io", "a/b", "new", None)
    assert ref.tag == "old"
    assert ref.digest == SHA256
    assert ref.with_tag(None) == Reference("quay.io", "a/b")


def test_with_digest_returns_copy_without_tag() -> None:
    ref = Reference.parse("quay.io/a/b:old")
    new = ref.with_digest(SHA512)
    assert new == Reference("quay.io", "a/b", None, SHA512)
    assert str(new) == f"quay.io/a/b@{SHA512}"
    assert ref.tag == "old"
    assert ref.with_digest(None) == Reference("quay.io", "a/b")


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("-x", id="dash"),
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="long"),
    ],
)
def test_with_tag_rejects_invalid(tag: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        Reference.parse("nginx").with_tag(tag)


@pytest.mark.parametrize(
    "digest",
    [
        pytest.param("sha256:abc", id="short"),
        pytest.param("latest", id="tag"),
        pytest.param("", id="empty"),
    ],
)
def test_with_digest_rejects_invalid(digest: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid digest"):
        Reference.parse("nginx").with_digest(digest)


@pytest.mark.parametrize(
    ("a", "b", "same_registry", "same_repository"),
    [
        pytest.param("host:5000/repo:a", "host:5000/repo:b", True, True, id="same-repo-other-tag"),
        pytest.param("host:5000/repo-a", "host:5000/repo-b", True, False, id="same-registry"),
        pytest.param("host:5000/repo", "host:5001/repo", False, False, id="other-port"),
        pytest.param("nginx", "index.docker.io/library/nginx:1", True, True, id="hub-aliases"),
        pytest.param("nginx", "docker.io/user/nginx", True, False, id="hub-other-namespace"),
        pytest.param(f"q.io/a@{SHA256}", "q.io/a:t", True, True, id="digest-vs-tag"),
        pytest.param("q.io/a", "quay.io/a", False, False, id="other-host"),
    ],
)
def test_same_registry_and_repository(
    a: str, b: str, same_registry: bool, same_repository: bool
) -> None:
    ra, rb = Reference.parse(a), Reference.parse(b)
    assert ra.same_registry(rb) is same_registry
    assert rb.same_registry(ra) is same_registry
    assert ra.same_repository(rb) is same_repository
    assert rb.same_repository(ra) is same_repository


def test_reference_is_frozen_and_hashable() -> None:
    ref = Reference.parse("nginx:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "2"  # type: ignore[misc]
    assert {ref, Reference.parse("docker.io/library/nginx:1")} == {ref}


@pytest.mark.parametrize(
    ("tag", "valid"),
    [
        pytest.param("latest", True, id="latest"),
        pytest.param("_", True, id="underscore"),
        pytest.param("0", True, id="digit"),
        pytest.param("a" * 128, True, id="128"),
        pytest.param("a" * 129, False, id="129"),
        pytest.param("", False, id="empty"),
        pytest.param("-a", False, id="dash"),
        pytest.param(".a", False, id="dot"),
        pytest.param("a\n", False, id="trailing-newline"),
    ],
)
def test_is_valid_tag(tag: str, valid: bool) -> None:
    assert is_valid_tag(tag) is valid


@pytest.mark.parametrize(
    ("registry", "normalised"),
    [
        pytest.param("docker.io", DOCKER_HUB, id="docker.io"),
        pytest.param("INDEX.docker.io", DOCKER_HUB, id="index-upper"),
        pytest.param("registry-1.docker.io", DOCKER_HUB, id="registry-1"),
        pytest.param("Quay.io", "Quay.io", id="other-kept"),
    ],
)
def test_normalise_registry(registry: str, normalised: str) -> None:
    assert normalise_registry(registry) == normalised


def test_split_repository() -> None:
    assert split_repository("nginx") == ("docker.io", "library/nginx")
    assert split_repository("quay.io/coreos/etcd") == ("quay.io", "coreos/etcd")
    with pytest.raises(InvalidReferenceError, match="empty name"):
        split_repository("")
