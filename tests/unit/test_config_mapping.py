"""The mapping form of an images-file value: `to`, exclude/semver/latest, referrers, prune.

Same form in YAML, JSON and the legacy `--config`; every bad value is a
`RuleError` naming the file and the source key.
"""

from __future__ import annotations

import pytest

from syncer_core.config import load_images_file, load_legacy_config
from syncer_core.config.ruleflags import apply_run_flags
from syncer_core.errors import RuleError
from syncer_core.plan import plan_rule
from syncer_core.runconfig import load_run_config
from tests.unit.helpers import write_data

FORMATS = ["yaml", "json"]
D1 = "sha256:" + "1" * 64
TAGS = [
    "latest", "3.3.9", "v3.4.0", "3.4.1", "3.4.2-rc.1", "3.4.2", "3.5.0-alpha.1", "3.5.0",
    "3.5.0_build.7", "3.5.1", "4.0.0", "4.0.0-rc.1", "3.5.1-debug",
]  # fmt: skip


def _rules(tmp_path, data, fmt="yaml", **kwargs):
    return load_images_file(write_data(tmp_path, data, fmt, "images"), env={}, **kwargs).rules


def _selected(rule, tags=TAGS):
    plan = plan_rule(rule, {rule.source.repository.name: tags})
    assert plan.error is None, plan.error
    return [job.source.tag for job in plan.jobs]


@pytest.mark.parametrize("fmt", FORMATS)
def test_mapping_form_reads_every_field(tmp_path, fmt):
    [rule] = _rules(
        tmp_path,
        {
            "quay.io/coreos/etcd": {
                "to": "reg.io/mirror/etcd",
                "exclude": ["-rc", "alpha"],
                "semver": ">=3.4, <4",
                "latest": 2,
                "referrers": True,
                "prune": True,
            }
        },
        fmt,
    )
    assert rule.target.repository.name == "reg.io/mirror/etcd"
    assert [p.pattern for p in rule.filters.exclude] == ["-rc", "alpha"]
    assert rule.filters.semver is not None and rule.filters.semver.text == ">=3.4, <4"
    assert (rule.filters.latest, rule.referrers, rule.prune) == (2, True, True)
    assert rule.name == "quay.io/coreos/etcd -> reg.io/mirror/etcd"


def test_plain_forms_keep_their_defaults(tmp_path):
    rules = _rules(tmp_path, {"nginx": "r.io/n", "alpine:3": ["r.io/a", "s.io/a"]})
    assert [(r.filters.active, r.referrers, r.prune) for r in rules] == [(False, False, False)] * 3


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, sorted(set(TAGS))),
        ({"exclude": "-rc"}, sorted(set(TAGS) - {"3.4.2-rc.1", "4.0.0-rc.1"})),
        ({"exclude": ["-", "_", "^v"]}, ["3.3.9", "3.4.1", "3.4.2", "3.5.0", "3.5.1", "4.0.0",
                                         "latest"]),
        # Pre-releases (and `3.5.1-debug`, a pre-release to semver) are out; v and _build in.
        ({"semver": ">=3.4, <4"}, ["3.4.1", "3.4.2", "3.5.0", "3.5.0_build.7", "3.5.1", "v3.4.0"]),
        ({"semver": ">=4.0.0-rc.0"}, ["4.0.0", "4.0.0-rc.1"]),
        ({"latest": 1}, ["4.0.0"]),
        # Equal versions (build metadata ignored) count once and are all kept.
        ({"latest": 3, "semver": "<4"}, ["3.4.2", "3.5.0", "3.5.0_build.7", "3.5.1"]),
        # latest counts pre-releases too; any semver range leaves them out first.
        ({"latest": 2}, ["4.0.0", "4.0.0-rc.1"]),
        ({"latest": 2, "semver": ">=0"}, ["3.5.1", "4.0.0"]),
        ({"latest": 100}, sorted(set(TAGS) - {"latest"})),
        ({"exclude": ["-rc", "alpha", "debug"], "semver": ">=3.4, <4", "latest": 2},
         ["3.5.0", "3.5.0_build.7", "3.5.1"]),
    ],
)  # fmt: skip
def test_filters_alone_and_combined(tmp_path, fields, expected):
    [rule] = _rules(tmp_path, {"quay.io/c/e": {"to": "r.io/e", **fields}})
    assert _selected(rule) == expected


def test_filters_run_after_the_keys_regex(tmp_path):
    [rule] = _rules(tmp_path, {"quay.io/c/e:/^3\\.4/": {"to": "r.io/e", "latest": 1}})
    # The regex keeps 3.4.*; latest then picks among those (3.4.2-rc.1 < 3.4.2).
    assert _selected(rule) == ["3.4.2"]


def test_filters_apply_to_an_explicit_tag_list(tmp_path):
    [rule] = _rules(tmp_path, {"r.io/a:1.0.0,2.0.0,edge": {"to": "s.io/a", "semver": ">=1.5"}})
    assert _selected(rule) == ["2.0.0"]


def test_latest_one_can_feed_a_renaming_destination(tmp_path):
    [rule] = _rules(tmp_path, {"quay.io/c/e": {"to": "r.io/e:stable", "latest": 1}})
    plan = plan_rule(rule, {"quay.io/c/e": TAGS})
    assert [(str(j.source), str(j.target)) for j in plan.jobs] == [
        ("quay.io/c/e:4.0.0", "r.io/e:stable")
    ]


def test_referrers_leaves_referrer_tags_out_of_the_selection(tmp_path):
    sig = "sha256-" + "a" * 64 + ".sig"
    index = "sha256-" + "b" * 64
    tags = ["v1", sig, index]
    plain, with_referrers = _rules(
        tmp_path, {"r.io/a": "s.io/a", "r.io/b": {"to": "s.io/b", "referrers": True}}
    )
    assert _selected(plain, tags) == sorted(tags)
    assert _selected(with_referrers, tags) == ["v1"]


def test_a_list_of_destinations_shares_the_options(tmp_path):
    rules = _rules(tmp_path, {"r.io/a": {"to": ["s.io/a", "t.io/a"], "latest": 1}})
    assert [(r.target.repository.name, r.filters.latest) for r in rules] == [
        ("s.io/a", 1),
        ("t.io/a", 1),
    ]


def test_empty_to_uses_the_default_registry(tmp_path):
    [rule] = _rules(tmp_path, {"r.io/team/a": {"to": None, "latest": 1}}, default_registry="m.io")
    assert rule.target.repository.name == "m.io/team/a"


@pytest.mark.parametrize("fmt", FORMATS)
def test_legacy_config_gets_the_mapping_form(tmp_path, fmt, no_docker):
    data = {"images": {"r.io/a": {"to": "s.io/a", "semver": ">=1", "prune": True}}}
    config = load_legacy_config(write_data(tmp_path, data, fmt, "config"), env={},
                                docker_config=no_docker)  # fmt: skip
    [rule] = config.images.rules
    assert rule.prune and rule.filters.semver is not None


def test_run_flags_turn_options_on_for_every_rule(tmp_path):
    path = write_data(tmp_path, {"r.io/a": "s.io/a", "r.io/b:v1": "s.io/b"}, "yaml", "images")
    rules = load_run_config(images=str(path), env={}, prune=True, referrers=True).rules.rules
    assert [(r.prune, r.referrers) for r in rules] == [(True, True), (True, True)]


# ------------------------------------------------------------------- refused

# (id, value of the key "r.io/team/app" unless the id says otherwise, fragment)
BAD = [
    ("unknown-field", {"to": "s.io/a", "tags": ["v1"]}, "unknown field 'tags'"),
    ("misspelt-field", {"to": "s.io/a", "exlude": "x"}, "unknown field 'exlude'"),
    ("to-missing", {"latest": 1}, "needs 'to'"),
    ("to-missing-empty-mapping", {}, "needs 'to'"),
    ("to-number", {"to": 5}, "got a number"),
    ("to-mapping", {"to": {"to": "s.io/a"}}, "got a mapping"),
    ("to-empty-list", {"to": []}, "destination list is empty"),
    ("to-invalid", {"to": "s.io/UPPER"}, "invalid destination"),
    ("to-null-no-default", {"to": None}, "--registry"),
    ("to-regex", {"to": "s.io/a:/x/"}, "only allowed in a source"),
    ("exclude-number", {"to": "s.io/a", "exclude": 3}, "exclude: must be a regex"),
    ("exclude-mapping", {"to": "s.io/a", "exclude": {"a": 1}}, "exclude: must be a regex"),
    ("exclude-item-number", {"to": "s.io/a", "exclude": ["ok", 3]}, "exclude[1]: must be a string"),
    ("exclude-empty", {"to": "s.io/a", "exclude": ""}, "empty regex"),
    ("exclude-bad-regex", {"to": "s.io/a", "exclude": ["("]}, "exclude[0]: invalid regex"),
    ("exclude-too-long", {"to": "s.io/a", "exclude": "a" * 1001}, "longer than"),
    ("semver-number", {"to": "s.io/a", "semver": 3}, "semver: must be a range string"),
    ("semver-list", {"to": "s.io/a", "semver": [">=1"]}, "semver: must be a range string"),
    ("semver-empty", {"to": "s.io/a", "semver": ""}, "range is empty"),
    ("semver-garbage", {"to": "s.io/a", "semver": "newest"}, "invalid range 'newest'"),
    ("semver-caret", {"to": "s.io/a", "semver": "^1.2"}, "not a version"),
    ("semver-stray-comma", {"to": "s.io/a", "semver": ">=1,"}, "comparator 2 is empty"),
    ("semver-space-op", {"to": "s.io/a", "semver": "> = 1"}, "not '<op> <version>'"),
    ("latest-zero", {"to": "s.io/a", "latest": 0}, "latest: must be at least 1"),
    ("latest-negative", {"to": "s.io/a", "latest": -2}, "at least 1, got -2"),
    ("latest-string", {"to": "s.io/a", "latest": "5"}, "latest: must be a whole number"),
    ("latest-float", {"to": "s.io/a", "latest": 2.5}, "latest: must be a whole number"),
    ("latest-bool", {"to": "s.io/a", "latest": True}, "got a boolean"),
    ("referrers-string", {"to": "s.io/a", "referrers": "yes"}, "referrers: must be true or false"),
    ("prune-number", {"to": "s.io/a", "prune": 1}, "prune: must be true or false"),
    ("prune-rename", {"to": "s.io/a:stable", "prune": True}, "renames tags"),
    ("prune-pairs", {"to": ["s.io/b", "s.io/a:x"], "prune": True}, "destination[1]"),
]  # fmt: skip
KEYED = [
    ("latest-on-digest", f"r.io/team/app@{D1}", {"to": "s.io/a", "latest": 1}, "digest"),
    ("semver-on-digest", f"r.io/team/app@{D1}", {"to": "s.io/a", "semver": ">=1"}, "digest"),
    ("exclude-on-digest-item", f"r.io/team/app:v1,{D1}", {"to": "s.io/a", "exclude": "x"},
     "names the digest"),
    ("prune-on-digest", f"r.io/team/app@{D1}", {"to": "s.io/a", "prune": True},
     "not tags"),
]  # fmt: skip
CASES = [(name, "r.io/team/app", value, fragment) for name, value, fragment in BAD] + KEYED


def test_the_bad_corpus_is_large_enough():
    assert len(CASES) >= 20


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("key", "value", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_bad_mapping_values_name_file_and_key(tmp_path, fmt, key, value, fragment):
    path = write_data(tmp_path, {key: value}, fmt, "images")
    with pytest.raises(RuleError) as info:
        load_images_file(path, env={})
    assert (info.value.file, info.value.key) == (str(path), key)
    assert f"{path}: key {key!r}: " in str(info.value)
    assert fragment in str(info.value)


def test_two_rules_writing_a_pruned_repository_are_refused(tmp_path):
    path = write_data(
        tmp_path,
        {"r.io/a": {"to": "s.io/m", "prune": True}, "r.io/b:v1": "s.io/m"},
        "yaml",
        "images",
    )
    with pytest.raises(RuleError) as info:
        load_images_file(path, env={})
    assert info.value.key == "r.io/a"
    assert "'r.io/b:v1 -> s.io/m' also writes to s.io/m" in str(info.value)


def test_prune_flag_is_refused_for_a_renaming_rule(tmp_path):
    path = write_data(tmp_path, {"r.io/a": "s.io/a", "r.io/b:v1": "s.io/b:v2"}, "yaml", "images")
    with pytest.raises(RuleError) as info:
        load_run_config(images=str(path), env={}, prune=True)
    assert info.value.key == "r.io/b:v1"
    assert "--prune (applies to every rule): prune: refused" in str(info.value)


def test_prune_flag_is_refused_when_rules_share_a_destination(tmp_path):
    rules = load_images_file(
        write_data(tmp_path, {"r.io/a": "s.io/m", "r.io/b": "s.io/m"}, "yaml", "images"), env={}
    )
    assert not any(r.prune for r in rules.rules)  # fine without prune
    with pytest.raises(RuleError, match=r"also writes to s\.io/m"):
        apply_run_flags(rules, prune=True)
