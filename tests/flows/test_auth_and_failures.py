"""Authenticated registries, failures confined to their image or rule, and config errors.

A failure names the image (or rule) and its reason, leaves the other images
synced and makes the exit code 1; a configuration error exits 2 before any
request reaches a registry.
"""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest
import yaml

from tests.flows.helpers import (
    RequestMark,
    Syncer,
    auth_entry,
    delete_blob,
    first_layer,
    of_kind,
    seed,
    tag_digests,
    writes,
)
from tests.support.images import build_image
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.flow, pytest.mark.registry]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_htpasswd_and_token_registries_work_and_wrong_credentials_fail_only_their_rules(
    sync: Syncer,
    src: RegistryServer,
    dst: RegistryServer,
    registry_htpasswd: RegistryServer,
    registry_token: RegistryServer,
):
    S, D = src.host, dst.host
    H, T = registry_htpasswd.host, registry_token.host
    ns = f"flows-{uuid.uuid4().hex[:8]}"
    v1, v2, origin = build_image(500), build_image(501), build_image(502)
    seed(src, "team/app", ["v1"], v1)
    seed(src, "team/app", ["v2"], v2)
    seed(registry_token, f"{ns}/origin", ["v1"], origin)
    wrong = "not-the-password"
    auth = {
        **{s.host: auth_entry(s) for s in (src, dst, registry_htpasswd, registry_token)},
        # Longer keys win: these namespaces get a wrong password.
        f"{H}/{ns}-bad": auth_entry(registry_htpasswd, password=wrong),
        f"{T}/{ns}-bad": auth_entry(registry_token, password=wrong),
    }
    failed_file = sync.tmp_path / "failed.json"

    run = sync.run(
        {
            f"{S}/team/app:v1": [f"{H}/{ns}/good", f"{H}/{ns}-bad/app"],
            f"{S}/team/app:v2": [f"{T}/{ns}/good", f"{T}/{ns}-bad/app"],
            f"{T}/{ns}/origin:v1": f"{D}/mirror/from-token",
            # Fails whole: listing its tags needs the (wrong) credentials.
            f"{H}/{ns}-bad/listed": f"{D}/mirror/never",
        },
        "--output-failed-images",
        str(failed_file),
        "--output-images-format",
        "json",
        auth=auth,
    )

    assert run.code == 1, run.describe()
    statuses = run.statuses()
    assert statuses == {
        f"{H}/{ns}/good:v1": "synced",
        f"{H}/{ns}-bad/app:v1": "failed",
        f"{T}/{ns}/good:v2": "synced",
        f"{T}/{ns}-bad/app:v2": "failed",
        f"{D}/mirror/from-token:v1": "synced",
    }
    for target in (f"{H}/{ns}-bad/app:v1", f"{T}/{ns}-bad/app:v2"):
        assert "AuthenticationError" in run.by_target()[target]["reason"]
        assert any(line.startswith("FAILED") and target in line for line in run.stdout.splitlines())
    assert tag_digests(registry_htpasswd, f"{ns}/good") == {"v1": v1.digest}
    assert tag_digests(registry_token, f"{ns}/good") == {"v2": v2.digest}
    assert tag_digests(dst, "mirror/from-token") == {"v1": origin.digest}
    (listing_error,) = run.report["rule_errors"].values()
    assert "AuthenticationError" in listing_error
    # The failed images, and the rule that failed before its images were known as itself:
    # fed back as --images, this file retries exactly what failed.
    assert json.loads(failed_file.read_text()) == {
        f"{S}/team/app:v1": [f"{H}/{ns}-bad/app:v1"],
        f"{S}/team/app:v2": [f"{T}/{ns}-bad/app:v2"],
        f"{H}/{ns}-bad/listed": [f"{D}/mirror/never"],
    }
    everything = run.stdout + run.stderr + json.dumps(run.report)
    for secret in (wrong, registry_htpasswd.password, registry_token.password):
        assert secret and secret not in everything


def test_missing_source_blob_fails_that_image_only_and_output_files_list_both_sides(
    sync: Syncer, src: RegistryServer, dst: RegistryServer
):
    S, D = src.host, dst.host
    unchanged, new, broken = build_image(510), build_image(511), build_image(512)
    seed(src, "team/ok", ["v1"], unchanged)
    seed(src, "team/ok", ["v2"], new)
    seed(src, "team/broken", ["v1"], broken)
    seed(dst, "mirror/ok", ["v1"], unchanged)  # already there: skipped, still a success
    lost = first_layer(broken)
    delete_blob(src, "team/broken", lost)
    at_dst = RequestMark(dst)
    ok_file, failed_file = sync.tmp_path / "ok.yaml", sync.tmp_path / "failed.yaml"

    run = sync.run(
        {f"{S}/team/ok": f"{D}/mirror/ok", f"{S}/team/broken:v1": f"{D}/mirror/broken"},
        "--output-success-images",
        str(ok_file),
        "--output-failed-images",
        str(failed_file),
    )

    assert run.code == 1, run.describe()
    assert run.statuses() == {
        f"{D}/mirror/ok:v1": "skipped",
        f"{D}/mirror/ok:v2": "synced",
        f"{D}/mirror/broken:v1": "failed",
    }
    reason = run.by_target()[f"{D}/mirror/broken:v1"]["reason"]
    assert "NotFoundError" in reason and lost in reason
    assert any(
        line.startswith("FAILED") and f"{D}/mirror/broken:v1" in line
        for line in run.stdout.splitlines()
    )
    manifest_puts = [r.path for r in of_kind(at_dst.since(), "PUT", "manifest")]
    assert manifest_puts == ["/v2/mirror/ok/manifests/v2"]
    assert tag_digests(dst, "mirror/broken") == {}
    assert tag_digests(dst, "mirror/ok") == {"v1": unchanged.digest, "v2": new.digest}
    assert yaml.safe_load(failed_file.read_text()) == {
        f"{S}/team/broken:v1": [f"{D}/mirror/broken:v1"]
    }
    assert yaml.safe_load(ok_file.read_text()) == {
        f"{S}/team/ok:v1": [f"{D}/mirror/ok:v1"],
        f"{S}/team/ok:v2": [f"{D}/mirror/ok:v2"],
    }
    assert _mode(ok_file) == _mode(failed_file) == 0o600

    # The success list is an images file: re-running it finds everything in place.
    at_dst = RequestMark(dst)
    again = sync.run(None, "--images", str(ok_file), "--auth", str(run.files["auth"]))
    assert again.code == 0, again.describe()
    assert set(again.statuses().values()) == {"skipped"}
    assert len(again.images) == 2
    assert writes(at_dst.since()) == []


BAD_CONFIGS = {
    "malformed-yaml": ("{S}/team/app:v1: [{D}/mirror/app\n", [], ["{F}", "YAML"]),
    "bad-reference": (
        {"{S}/Team/App:v1": "{D}/mirror/app"},
        [],
        ["{F}", "{S}/Team/App:v1", "lowercase"],
    ),
    "count-mismatch": (
        {"{S}/team/app:a,b": "{D}/mirror/app:x"},
        [],
        ["{F}", "{S}/team/app:a,b", "names 1"],
    ),
    "proc-zero": ({"{S}/team/app:v1": "{D}/mirror/app"}, ["--proc", "0"], ["--proc"]),
}


def _fill(value, **names: str):
    """Put the registry hosts (and the images file name) into a case."""
    if isinstance(value, dict):
        return {_fill(k, **names): _fill(v, **names) for k, v in value.items()}
    return value.format(**names)


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_configuration_exits_2_naming_the_culprit_before_any_request(
    sync: Syncer, src: RegistryServer, dst: RegistryServer, case: str
):
    images, flags, named = BAD_CONFIGS[case]

    hosts = {"S": src.host, "D": dst.host}

    run = sync.run(_fill(images, **hosts), *flags)

    assert run.code == 2, run.describe()
    assert run.report is None
    for text in named:
        assert _fill(text, F=str(run.files["images"]), **hosts) in run.stderr, run.describe()
    assert src.requests() == []
    assert dst.requests() == []
