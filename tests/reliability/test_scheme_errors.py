"""TLS to a plain-HTTP registry is a configuration error: failed at once, saying what to set.

Before, `[SSL: WRONG_VERSION_NUMBER]` was a transient error: retried by the
client and by every Prefect task attempt (a ~30 s run for one image) and
reported without a hint. Now it is a `SchemeMismatchError`, which neither
the client nor `retry_transient` retries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.states import Failed

from flows.tasks import retry_transient
from syncer_core.errors import SchemeMismatchError, TransientRegistryError
from tests.reliability.conftest import CliRunner
from tests.reliability.helpers import client_for, tag_digests, write_document
from tests.support.images import build_image, push_image
from tests.support.registry_server import RegistryServer

pytestmark = [pytest.mark.flow, pytest.mark.registry]


def test_retry_transient_does_not_retry_a_scheme_mismatch() -> None:
    mismatch = SchemeMismatchError("speaks plain HTTP", speaks="http", registry="r")
    assert not retry_transient(None, None, Failed(data=mismatch))
    assert retry_transient(None, None, Failed(data=TransientRegistryError("503")))


def test_a_plain_http_source_without_insecure_fails_its_images_at_once(
    cli: CliRunner, registry_plain: RegistryServer, registry_plain2: RegistryServer, tmp_path: Path
) -> None:
    src, dst = registry_plain, registry_plain2
    image = build_image(1700, layer_sizes=(300,))
    with client_for(src) as client:
        push_image(client, "scheme/one", "v1", image)
    images = {
        f"{src.host}/scheme/one:v1": f"{dst.host}/scheme/one",
        f"{dst.host}/seed/none:v1": f"{dst.host}/control/none",  # another registry: unaffected
    }
    auth = {dst.host: {"insecure": True}}  # the source's entry lacks `insecure: true`
    args = [
        "--images",
        str(write_document(tmp_path / "images.yaml", images)),
        "--auth",
        str(write_document(tmp_path / "auth.yaml", auth)),
        "--retries",
        "2",
    ]

    run = cli(args)

    assert run.code == 1, run.describe()
    target = f"{dst.host}/scheme/one:v1"
    reason = run.failed()[target]
    assert reason.startswith("SchemeMismatchError: "), reason
    assert f"{src.host} speaks plain HTTP" in reason
    assert f"set `insecure: true` in the auth-file entry for {src.host}" in reason
    [result] = [i for i in run.images if i["target"] == target]
    assert result["seconds"] < 2.0, result  # no client retries (their backoffs add up to 3.5 s)
    assert "Retry 1/2" not in run.stderr + run.stdout  # nor Prefect task retries
    # The control image failed for its own reason (no such source), not a scheme one.
    control = run.failed()[f"{dst.host}/control/none:v1"]
    assert "SchemeMismatchError" not in control, control
    assert tag_digests(dst, "scheme/one") == {}
