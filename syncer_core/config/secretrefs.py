"""References to secrets kept outside the auth file, resolved when a registry is used.

An auth-file `password` or `token` may be written as

```yaml
registry.example.com:
  username: mirror
  password: "{{ prefect.blocks.secret.mirror-password }}"
```

The core only recognises and validates the syntax (it never imports
Prefect); the orchestration layer installs a resolver that loads the Secret
block at run time, inside the worker. Until a credential is looked up for
an actual registry, the reference stays a reference, so loading a file
never contacts anything and no secret value reaches flow parameters.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from pydantic import SecretStr

from syncer_core.errors import ConfigError

__all__ = [
    "SecretResolver",
    "resolve_secret",
    "secret_block_name",
    "set_secret_resolver",
]

SecretResolver = Callable[[str], str]

_REFERENCE_RE = re.compile(r"^\{\{\s*prefect\.blocks\.secret\.([a-z0-9][a-z0-9-]*)\s*\}\}\Z")
_resolver: SecretResolver | None = None
_cache: dict[str, SecretStr] = {}
_lock = threading.Lock()


def secret_block_name(value: str) -> str | None:
    """The Secret block named by `value`, or None if it is not a reference.

    Raises:
        ValueError: the value looks like a reference (`{{ ... }}`) but is malformed.
    """
    stripped = value.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return None
    match = _REFERENCE_RE.match(stripped)
    if match is None:
        raise ValueError(
            "malformed secret reference: expected {{ prefect.blocks.secret.<block-name> }} "
            "with a lowercase block name"
        )
    return match.group(1)


def set_secret_resolver(resolver: SecretResolver | None) -> None:
    """Install (or remove) the function that loads a secret by block name."""
    global _resolver
    with _lock:
        _resolver = resolver
        _cache.clear()


def resolve_secret(value: SecretStr | None, *, where: str) -> SecretStr | None:
    """Return the secret itself: references are loaded (once) through the resolver.

    Args:
        value: a field value from the auth file.
        where: names the auth key and field for error messages.

    Raises:
        ConfigError: a reference without an installed resolver, or a failing load.
    """
    if value is None:
        return None
    name = secret_block_name(value.get_secret_value())
    if name is None:
        return value
    with _lock:
        cached = _cache.get(name)
        resolver = _resolver
    if cached is not None:
        return cached
    if resolver is None:
        raise ConfigError(
            f"references Secret block {name!r}, which can only be loaded inside a Prefect run",
            key=where,
        )
    try:
        secret = SecretStr(resolver(name))
    except Exception as error:  # noqa: BLE001 - any loader failure is a config problem
        raise ConfigError(
            f"cannot load Secret block {name!r}: {type(error).__name__}", key=where
        ) from None
    with _lock:
        _cache[name] = secret
    return secret
