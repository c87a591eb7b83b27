"""Planning: rules + tag listings → jobs, one result per rule; failures stay per rule."""

from __future__ import annotations

import pytest

from syncer_core.config import AuthConfig, build_rules
from syncer_core.errors import ConfigError
from syncer_core.plan import RulePlan, SyncJob, plan_jobs, plan_rule, repositories_to_list
from syncer_core.reference import Reference
from syncer_core.registry.access import RegistryAccess

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
NGINX = "docker.io/library/nginx"
LISTINGS = {
    NGINX: ["1.25", "latest", "1.24", "1.25", "1.26-rc1"],
    "quay.io/coreos/etcd": ["v3.5.0", "v3.4.0"],
    "reg.io/empty": [],
    "reg.io/one": ["only"],
}


def rules_of(data, **kwargs):
    return build_rules(data, file="images.yaml", env={}, **kwargs).rules


def pairs(plan: RulePlan) -> list[tuple[str, str]]:
    return [(str(job.source), str(job.target)) for job in plan.jobs]


# (id, images data, expected (source, target) pairs of the single rule)
CASES = [
    ("all-tags-sorted-deduplicated", {"nginx": "r.io/n"},
     [(f"{NGINX}:{t}", f"r.io/n:{t}") for t in ["1.24", "1.25", "1.26-rc1", "latest"]]),
    ("regex-search-semantics", {"nginx:/rc/": "r.io/n"},
     [(f"{NGINX}:1.26-rc1", "r.io/n:1.26-rc1")]),
    ("regex-anchored", {"nginx:/^1\\.2[45]$/": "r.io/n"},
     [(f"{NGINX}:1.24", "r.io/n:1.24"), (f"{NGINX}:1.25", "r.io/n:1.25")]),
    ("regex-no-match-untagged-is-empty", {"nginx:/^v9/": "r.io/n"}, []),
    ("empty-repository", {"reg.io/empty": "r.io/e"}, []),
    ("one-tag", {"nginx:1.25": "r.io/n"}, [(f"{NGINX}:1.25", "r.io/n:1.25")]),
    ("explicit-order-kept", {"nginx:b,a,c": "r.io/n"},
     [(f"{NGINX}:b", "r.io/n:b"), (f"{NGINX}:a", "r.io/n:a"), (f"{NGINX}:c", "r.io/n:c")]),
    ("explicit-duplicates-collapse", {"nginx:a,a": "r.io/n"}, [(f"{NGINX}:a", "r.io/n:a")]),
    ("same-tag-to-two-names", {"nginx:a,a": "r.io/n:x,y"},
     [(f"{NGINX}:a", "r.io/n:x"), (f"{NGINX}:a", "r.io/n:y")]),
    ("rename", {"nginx:1.25": "r.io/web:stable"}, [(f"{NGINX}:1.25", "r.io/web:stable")]),
    ("digest-untagged-target-by-digest", {f"nginx@{D1}": "r.io/n"},
     [(f"{NGINX}@{D1}", f"r.io/n@{D1}")]),
    ("digest-to-tag", {f"nginx@{D1}": "r.io/n:pin"}, [(f"{NGINX}@{D1}", "r.io/n:pin")]),
    ("mixed-list", {f"nginx:1,{D1}": "r.io/n"},
     [(f"{NGINX}:1", "r.io/n:1"), (f"{NGINX}@{D1}", f"r.io/n@{D1}")]),
    ("all-tags-single-tag-rename", {"reg.io/one": "r.io/o:renamed"},
     [("reg.io/one:only", "r.io/o:renamed")]),
    ("regex-paired-list", {"quay.io/coreos/etcd:/^v3/": "r.io/e:old,new"},
     [("quay.io/coreos/etcd:v3.4.0", "r.io/e:old"), ("quay.io/coreos/etcd:v3.5.0", "r.io/e:new")]),
    ("listed-tag-to-digest-target", {"reg.io/one": f"r.io/o@{D1}"},
     [("reg.io/one:only", f"r.io/o@{D1}")]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_plan_forms(data, expected):
    (plan,) = plan_jobs(rules_of(data), LISTINGS)
    assert plan.ok, plan.error
    assert pairs(plan) == expected
    assert all(job.rule == plan.rule for job in plan.jobs)


# (id, images data, listings override, fragment of the rule's error)
FAILURES = [
    ("all-tags-count-mismatch", {"nginx": "r.io/n:one"}, {}, "matched 4 tag(s)"),
    ("regex-count-mismatch", {"nginx:/^1/": "r.io/n:a,b"}, {}, "names 2"),
    ("regex-zero-matches-tagged", {"nginx:/^v9/": "r.io/n:x"}, {}, "matched 0 tag(s)"),
    ("listing-missing", {"reg.io/unlisted": "r.io/u"}, {}, "no tag listing was provided"),
    ("listing-failed-with-reason", {"nginx": "r.io/n"}, {NGINX: None}, "401 unauthorized"),
]


@pytest.mark.parametrize(
    ("data", "override", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in FAILURES]
)
def test_failures_stay_in_their_rule(data, override, fragment):
    good = {"quay.io/coreos/etcd": "r.io/etcd"}
    listings = {k: v for k, v in {**LISTINGS, **override}.items() if v is not None}
    errors = {name: "401 unauthorized" for name, v in override.items() if v is None}
    bad, ok = plan_jobs(rules_of({**data, **good}), listings, listing_errors=errors)
    assert not bad.ok and not bad.jobs
    assert bad.error is not None and fragment in bad.error
    assert ok.ok and len(ok.jobs) == 2


def test_invalid_listed_tags_are_skipped_with_warning():
    (plan,) = plan_jobs(rules_of({"reg.io/x": "r.io/x"}), {"reg.io/x": ["ok", "-bad", "a b"]})
    assert pairs(plan) == [("reg.io/x:ok", "r.io/x:ok")]
    assert len(plan.warnings) == 1 and "-bad" in plan.warnings[0]


def test_jobs_deduplicated_per_rule_not_across_rules():
    rules = rules_of({"nginx:1.25": "r.io/n", "nginx:1.25,1.25": "r.io/n"})
    first, second = plan_jobs(rules, LISTINGS)
    assert first.jobs == tuple(job.model_copy(update={"rule": first.rule}) for job in second.jobs)
    assert len(second.jobs) == 1


def test_destination_list_uses_one_listing():
    rules = rules_of({"nginx:/^1\\.2/": ["a.io/n", "b.io/n"]})
    assert [repo.name for repo in repositories_to_list(rules)] == [NGINX]
    plans = plan_jobs(rules, LISTINGS)
    assert [len(plan.jobs) for plan in plans] == [3, 3]


def test_repositories_to_list():
    rules = rules_of(
        {
            "quay.io/coreos/etcd": "r.io/e",
            "nginx:/x/": "r.io/n",
            "library/nginx": "s.io/n",
            "busybox:1": "r.io/b",
            f"alpine@{D1}": "r.io/a",
        }
    )
    repos = repositories_to_list(rules)
    assert repos == [
        Reference.parse("docker.io/library/nginx"),
        Reference.parse("quay.io/coreos/etcd"),
    ]
    assert all(repo.tag is None and repo.digest is None for repo in repos)


class RecordingLookup:
    def __init__(self, failing: set[str]):
        self.failing = failing
        self.seen: list[str] = []

    def __call__(self, reference: Reference) -> RegistryAccess:
        self.seen.append(reference.name)
        if reference.registry in self.failing:
            raise ConfigError(
                f"credential helper docker-credential-x failed for {reference.registry}"
            )
        return RegistryAccess()


def test_credential_failure_fails_only_that_rule():
    lookup = RecordingLookup({"bad.io"})
    rules = rules_of({"nginx:1.25": ["bad.io/n", "good.io/n"], "bad.io/src:1": "good.io/s"})
    plans = plan_jobs(rules, LISTINGS, lookup=lookup)
    assert [plan.ok for plan in plans] == [False, True, False]
    assert plans[0].error is not None and "credentials for bad.io/n" in plans[0].error
    assert plans[2].error is not None and "bad.io/src" in plans[2].error
    assert "docker.io/library/nginx" in lookup.seen and "good.io/n" in lookup.seen


def test_auth_config_lookup_plugs_in():
    rules = rules_of({"nginx:1.25": "r.io/n"})
    auth = AuthConfig({})
    (plan,) = plan_jobs(rules, {}, lookup=auth.lookup)
    assert plan.ok and len(plan.jobs) == 1


def test_plan_rule_and_job_models():
    (rule,) = rules_of({"nginx:1.25": "r.io/n:x"})
    plan = plan_rule(rule, {})
    (job,) = plan.jobs
    assert str(job) == f"{NGINX}:1.25 -> r.io/n:x"
    assert SyncJob.model_validate(job.model_dump()) == job
    assert RulePlan.model_validate_json(plan.model_dump_json()) == plan
    with pytest.raises(ValueError, match="frozen"):
        job.rule = "other"  # type: ignore[misc]


def test_planning_does_not_mutate_inputs():
    listings = {NGINX: ["b", "a"]}
    rules = rules_of({"nginx": "r.io/n"})
    plan_jobs(rules, listings)
    assert listings == {NGINX: ["b", "a"]}
