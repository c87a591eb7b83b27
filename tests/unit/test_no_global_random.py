"""Our code and test fixtures never draw from the module-level `random`.

They run in threads (engine pools, fault proxies, token servers) that may be
busy while Hypothesis draws examples, and Hypothesis reports any change of
the global random state during a draw as a strategy using `random`: a flaky
failure of an unrelated fuzz test. Randomness comes from a `random.Random()`
instance of the module's own (e.g. `syncer_core.registry.retry._RNG`).
The check reads the source, so it covers code paths no test happens to run.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = (
    "syncer_core",
    "flows",
    "tests/support",
    "tests/conftest.py",
    *(
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "tests").glob("*/*.py"))
        if p.name in ("conftest.py", "helpers.py")
    ),
)
#: The module's functions bound to its hidden global instance.
GLOBAL_FUNCTIONS = frozenset(
    name
    for name in dir(random)
    if not name.startswith("_")
    and callable(getattr(random, name))
    and isinstance(getattr(getattr(random, name), "__self__", None), random.Random)
)


def global_random_uses(source: str) -> list[str]:
    """`line: text` of every use of a global-instance function of `random`."""
    tree = ast.parse(source)
    aliases = {"random"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name == "random")
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            names = [a.name for a in node.names if a.name in GLOBAL_FUNCTIONS]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr in GLOBAL_FUNCTIONS
        ):
            names = [node.attr]
        else:
            continue
        found.extend((node.lineno, name) for name in names)
    return [f"{line}: random.{name}" for line, name in sorted(found)]


def test_the_check_sees_every_form_of_use() -> None:
    assert {"random", "getrandbits", "uniform", "shuffle", "seed"} <= GLOBAL_FUNCTIONS
    assert "Random" not in GLOBAL_FUNCTIONS
    source = (
        "import random\nimport random as r\nfrom random import uniform, Random\n"
        "a = random.random()\nb = r.getrandbits(32)\nc = Random(1).random()\n"
        "d = random.Random().uniform(0, 1)\n"
    )
    assert global_random_uses(source) == [
        "3: random.uniform",
        "4: random.random",
        "5: random.getrandbits",
    ]


@pytest.mark.parametrize("package", CHECKED)
def test_no_module_level_random_in(package: str) -> None:
    path = ROOT / package
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    assert files, f"nothing found under {package}"
    uses = {
        str(path.relative_to(ROOT)): found
        for path in files
        if (found := global_random_uses(path.read_text(encoding="utf-8")))
    }
    assert not uses, f"use a module-level random.Random() instance instead: {uses}"
