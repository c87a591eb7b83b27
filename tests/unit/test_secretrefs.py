"""Secret block references in the auth file: syntax, lazy resolution, no leaks."""

from __future__ import annotations

import pytest

from syncer_core.config import load_auth_file
from syncer_core.config.secretrefs import set_secret_resolver
from syncer_core.errors import ConfigError
from syncer_core.reference import Reference

SECRET = "s3cret-from-block"
REF = Reference.parse("registry.example.com/team/app:1")


@pytest.fixture(autouse=True)
def no_resolver():
    set_secret_resolver(None)
    yield
    set_secret_resolver(None)


def write(tmp_path, password: str):
    path = tmp_path / "auth.yaml"
    path.write_text(f'registry.example.com:\n  username: mirror\n  password: "{password}"\n')
    return path


def test_reference_is_resolved_at_lookup_through_the_resolver(tmp_path):
    calls = []
    set_secret_resolver(lambda name: calls.append(name) or SECRET)
    auth = load_auth_file(
        write(tmp_path, "{{ prefect.blocks.secret.mirror-password }}"), use_docker_config=False
    )
    assert calls == []  # loading the file resolves nothing
    access = auth.lookup(REF)
    assert access.password is not None and access.password.get_secret_value() == SECRET
    assert calls == ["mirror-password"]
    auth.lookup(REF)
    assert calls == ["mirror-password"]  # cached per run
    assert SECRET not in repr(access) and SECRET not in str(auth)


def test_reference_without_resolver_is_a_config_error_naming_file_and_key(tmp_path):
    path = write(tmp_path, "{{prefect.blocks.secret.mirror-password}}")
    auth = load_auth_file(path, use_docker_config=False)
    with pytest.raises(ConfigError) as info:
        auth.lookup(REF)
    message = str(info.value)
    assert str(path) in message and "registry.example.com.password" in message
    assert "mirror-password" in message


@pytest.mark.parametrize(
    "value",
    [
        "{{ prefect.blocks.secret.Mirror }}",
        "{{ prefect.blocks.secret. }}",
        "{{ prefect.blocks.json.x }}",
        "{{ prefect.blocks.secret.a b }}",
    ],
)
def test_malformed_reference_is_rejected_when_loading(tmp_path, value):
    path = write(tmp_path, value)
    with pytest.raises(ConfigError) as info:
        load_auth_file(path, use_docker_config=False)
    assert str(path) in str(info.value) and "registry.example.com" in str(info.value)
    assert "malformed secret reference" in str(info.value)


def test_failing_resolver_does_not_leak_its_message(tmp_path):
    def broken(name: str) -> str:
        raise RuntimeError(f"backend said {SECRET}")

    set_secret_resolver(broken)
    auth = load_auth_file(write(tmp_path, "{{ prefect.blocks.secret.x }}"), use_docker_config=False)
    with pytest.raises(ConfigError) as info:
        auth.lookup(REF)
    assert SECRET not in str(info.value) and "RuntimeError" in str(info.value)


def test_plain_passwords_are_untouched(tmp_path):
    set_secret_resolver(lambda name: pytest.fail("must not be called"))
    auth = load_auth_file(write(tmp_path, "{not a reference}"), use_docker_config=False)
    access = auth.lookup(REF)
    assert access.password is not None
    assert access.password.get_secret_value() == "{not a reference}"
