"""An all-tags rule over a repository with manifests but no tags matches nothing (issue 15 #6).

distribution 2.8 answers the tag list of such a repository (pushed by
digest only, or every tag deleted) with 404 `NAME_UNKNOWN`. That used to
fail the rule on every run; now the rule matches nothing and warns, naming
the repository.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from syncer_core.errors import NotFoundError
from syncer_core.runconfig import load_run_config
from syncer_core.sync.check import check_rule
from syncer_core.sync.session import SyncOptions, SyncSession
from tests.integration.helpers import unique
from tests.support.images import build_image, push_image
from tests.support.registry_server import RegistryServer, auth_entry
from tests.support.sync_helpers import registry_client, write_document

pytestmark = [pytest.mark.registry]


def test_all_tags_rule_over_a_tagless_repository_matches_nothing_with_a_warning(
    fresh_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    src, dst = fresh_registry("plain"), fresh_registry("plain")
    repo = unique("untagged/app")
    image = build_image(1900, layer_sizes=(400,))
    with registry_client(src) as client:
        push_image(client, repo, None, image)  # by digest only: manifests, no tags
        with pytest.raises(NotFoundError, match="NAME_UNKNOWN"):
            client.list_tags(repo)  # what distribution 2.8 answers
    rules = {f"{src.host}/{repo}": f"{dst.host}/mirror/app"}
    config = load_run_config(
        images=str(write_document(tmp_path / "images.yaml", rules)),
        auth=str(
            write_document(tmp_path / "auth.yaml", {s.host: auth_entry(s) for s in (src, dst)})
        ),
    )
    session = SyncSession(config.auth.lookup, SyncOptions(proc=1))
    session.rules = config.rules.rules
    try:
        check = check_rule(session, 0)
    finally:
        session.close()
    assert check.error is None
    assert check.found == []
    [warning] = check.warnings
    assert warning.startswith(f"{src.host}/{repo}: no tags to sync"), warning
