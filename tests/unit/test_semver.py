"""Our semver module: parsing tags, precedence, ranges and npm's pre-release rule."""

from __future__ import annotations

import itertools

import pytest

from syncer_core.semver import Version, parse_range, parse_version


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("1.2.3", Version(1, 2, 3)),
        ("v1.2.3", Version(1, 2, 3)),
        ("V0.0.0", Version(0, 0, 0)),
        ("1.2.3-rc.1", Version(1, 2, 3, ("rc", "1"))),
        ("1.2.3-0.alpha-x", Version(1, 2, 3, ("0", "alpha-x"))),
        ("1.2.3+build.5", Version(1, 2, 3, (), ("build", "5"))),
        ("1.2.3_build.5", Version(1, 2, 3, (), ("build", "5"))),
        ("v10.20.30-beta_sha.abc", Version(10, 20, 30, ("beta",), ("sha", "abc"))),
    ],
)
def test_versions_parse(tag, expected):
    version = parse_version(tag)
    assert version == expected
    assert version is not None and version.build == expected.build


@pytest.mark.parametrize(
    "tag",
    ["latest", "1.2", "1", "01.2.3", "1.02.3", "1.2.03", "1.2.3-01", "1.2.3-", "1.2.3+",
     "vv1.2.3", "1.2.3.4", "1.2.3-rc..1", "", "x1.2.3", "1.2.3 "],
)  # fmt: skip
def test_non_versions_do_not_parse(tag):
    assert parse_version(tag) is None


def test_precedence_follows_semver_org():
    # semver.org §11's own example chain.
    chain = [
        "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
        "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0",
    ]  # fmt: skip
    versions = [parse_version(tag) for tag in chain]
    assert None not in versions
    for lower, higher in itertools.pairwise(versions):
        assert lower is not None and higher is not None and lower < higher
    assert sorted(reversed(versions)) == versions  # type: ignore[type-var]


def test_build_metadata_is_ignored_for_ordering_and_equality():
    assert parse_version("1.0.0+a") == parse_version("1.0.0_b") == parse_version("v1.0.0")
    assert not parse_version("1.0.0+zzz") > parse_version("1.0.0+aaa")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("range_text", "inside", "outside"),
    [
        (">=3.4, <4", ["3.4.0", "v3.9.9", "3.4.1_b"],
         ["3.3.9", "4.0.0", "4.0.0-rc.1", "3.5.0-rc.1"]),
        (">3.4.0", ["3.4.1", "9.0.0"], ["3.4.0", "3.4.0_x", "3.5.0-rc.1"]),
        ("<=1.2.3", ["1.2.3", "0.0.1", "1.2.3+x"], ["1.2.4", "1.2.3-rc.1"]),
        ("=1.2.3", ["1.2.3", "v1.2.3", "1.2.3_meta"], ["1.2.4", "1.2.3-rc.1"]),
        ("1.2.3", ["1.2.3"], ["1.2.2"]),
        ("3.4", ["3.4.0", "3.4.99"], ["3.5.0", "3.3.0", "3.4.1-rc.1"]),
        ("=3", ["3.0.0", "3.9.1"], ["4.0.0", "2.9.9"]),
        ("!=3.4, >=3", ["3.3.0", "3.5.0"], ["3.4.0", "3.4.7", "2.0.0"]),
        ("!=1.2.3", ["1.2.4", "1.2.2"], ["1.2.3", "v1.2.3_x"]),
        # A range naming a pre-release admits pre-releases of that major.minor.patch only.
        (">=4.0.0-rc.0, <5", ["4.0.0-rc.1", "4.0.0-rc.0", "4.0.0", "4.2.0"],
         ["4.1.0-rc.1", "4.0.0-beta", "3.9.9"]),
        ("<2.0.0-beta.2", ["2.0.0-beta.1", "2.0.0-alpha", "1.9.0"],
         ["2.0.0-beta.2", "2.0.0", "1.9.0-rc.1"]),
        (">= v1.0.0", ["1.0.0"], ["0.9.0"]),
    ],
)  # fmt: skip
def test_ranges(range_text, inside, outside):
    parsed = parse_range(range_text)
    assert [t for t in inside if parsed.matches_tag(t)] == inside
    assert [t for t in outside if parsed.matches_tag(t)] == []


def test_non_version_tags_never_match():
    assert not parse_range(">=0").matches_tag("latest")
    assert not parse_range(">=0").matches_tag("1.2")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (">=1,", "comparator 2 is empty"),
        (",>=1", "comparator 1 is empty"),
        ("~1.2", "not a version"),
        ("^1.2.3", "not a version"),
        (">=1.2.3.4", "not a version"),
        ("> = 1", "not '<op> <version>'"),
        ("1.2.x", "not a version"),
        (">=1 <2", "not '<op> <version>'"),
        ("1 || 2", "not '<op> <version>'"),
        ("=>1", "not a version"),
        ("x" * 1001, "longer than"),
    ],
)
def test_bad_ranges_are_refused(text, fragment):
    with pytest.raises(ValueError) as caught:
        parse_range(text)
    assert fragment in str(caught.value)
