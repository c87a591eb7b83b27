"""The core is plain Python: importing every `syncer_core` module pulls in no Prefect.

Modules are found with `pkgutil.walk_packages`, so new ones are covered without
editing this file. The imports run in a fresh interpreter, because this test
process may already have imported Prefect for other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import syncer_core
from tests.unit.helpers import core_module_names

ROOT = Path(syncer_core.__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "syncer_core"
# The orchestration layer and test-only dependencies must stay out of the core.
FORBIDDEN = ("prefect", "flows", "pytest", "hypothesis", "cryptography")


def test_walk_finds_every_source_file() -> None:
    # A sub-directory without __init__.py would be skipped by walk_packages.
    on_disk = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        on_disk.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert on_disk <= set(core_module_names())


def test_importing_the_core_does_not_import_prefect() -> None:
    modules = core_module_names()
    assert "syncer_core.reference" in modules
    code = (
        f"import {', '.join(modules)}\n"
        "import sys\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "assert not loaded, loaded\n"
    )
    pythonpath = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
