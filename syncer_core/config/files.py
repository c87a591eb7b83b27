"""The one loader for auth, images and legacy config files (YAML or JSON by suffix).

Every problem becomes a `ConfigError` naming the file (and the key, when there
is one). Messages are built from positions and problem descriptions only, never
from the offending text, because a line of an auth file may hold a password:
PyYAML's own `str(error)` quotes the source line, so it is not used.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from syncer_core.errors import ConfigError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "describe_validation_error",
    "expand_env",
    "load_document",
    "parse_document",
    "type_name",
    "unset_env_vars",
]

#: File suffixes we accept, and the format each one selects (case-insensitive).
SUPPORTED_SUFFIXES: dict[str, str] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}

# Go's os.ExpandEnv forms `${NAME}` and `$NAME`; shell special variables ($$, $1,
# ...) are left as written instead of being expanded to "" as Go does.
_ENV_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


# Pydantic error types whose stock message we replace with a config author's wording.
_MESSAGES = {
    "extra_forbidden": "unknown field",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "string_type": "must be a string (quote it in YAML)",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number (unquoted, e.g. 4194304)",
}


class _DuplicateKeyError(Exception):
    def __init__(self, key: object, line: int | None):
        self.key = key
        self.line = line
        super().__init__(key)


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<:` merges are allowed to be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable key: SafeConstructor reports it below
            if duplicate:
                raise _DuplicateKeyError(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Expand `${NAME}` and `$NAME` like Go's `os.ExpandEnv` (unset means "").

    Args:
        text: the string from the file.
        env: the environment to read.

    Returns:
        The expanded string.
    """
    return _ENV_RE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def unset_env_vars(text: str, env: Mapping[str, str]) -> list[str]:
    """Return the variable names referenced by `text` that `env` does not define."""
    names = (m.group(1) or m.group(2) for m in _ENV_RE.finditer(text))
    return sorted({name for name in names if name not in env})


def _format_for(path: Path) -> str:
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"unsupported file extension {path.suffix or '(none)'!r}: use .yaml, .yml or .json",
            file=str(path),
        )
    return fmt


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=str(path)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not valid UTF-8 (byte {exc.start})", file=str(path)) from None


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key, None)
        result[key] = value
    return result


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"invalid YAML{where}: {exc.problem or exc.context or 'syntax error'}"
    return "invalid YAML"


def _decode(text: str, fmt: str, file: str) -> Any:
    try:
        if fmt == "json":
            return json.loads(text, object_pairs_hook=_json_pairs)
        return yaml.load(text, Loader=_UniqueKeySafeLoader)  # a SafeLoader subclass
    except _DuplicateKeyError as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise ConfigError(
            f"duplicate key{where}: each key may appear only once", file=file, key=str(exc.key)
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=file
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc), file=file) from None
    except RecursionError:
        raise ConfigError("document is nested too deeply", file=file) from None


def parse_document(text: str, fmt: str, *, file: str) -> dict[str, Any]:
    """Parse file text into a mapping with string keys.

    Args:
        text: the file content.
        fmt: `"yaml"` or `"json"`.
        file: the file name to put in error messages.

    Returns:
        The top-level mapping (possibly empty for `{}`).

    Raises:
        ConfigError: empty file, syntax error, duplicate key, non-mapping top
            level or a non-string top-level key.
    """
    if not text.strip():
        raise ConfigError("file is empty", file=file)
    data = _decode(text, fmt, file)
    if data is None:
        raise ConfigError("file is empty (no content besides comments)", file=file)
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, got {type_name(data)}", file=file)
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(
                f"keys must be strings, got {type_name(key)} (quote it)", file=file, key=str(key)
            )
    return data


def load_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (`.yaml`/`.yml`) or JSON (`.json`) file into a mapping.

    Args:
        path: the file to read; its suffix selects the format.

    Returns:
        The top-level mapping with string keys.

    Raises:
        ConfigError: unsupported suffix, unreadable file, or anything
            `parse_document` rejects.
    """
    file = Path(path)
    fmt = _format_for(file)
    return parse_document(_read_text(file), fmt, file=str(path))


def type_name(value: object) -> str:
    """Name a decoded value's type the way a config author would."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def describe_validation_error(exc: ValidationError) -> list[tuple[tuple[str, ...], str]]:
    """Turn a pydantic error into `(location, message)` pairs without input values.

    Args:
        exc: the validation error.

    Returns:
        One pair per problem; the location is the path of keys as strings.
    """
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = tuple(str(part) for part in error["loc"])
        message = _MESSAGES.get(error["type"], error["msg"]).removeprefix("Value error, ")
        problems.append((loc, message))
    return problems
