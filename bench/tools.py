"""The commands under test: image-syncer, skopeo sync, and the curl pipe.

Destination paths are made comparable by construction: every benchmark
repository is a single path component (`bench-s00`, `bench-l512`, ...), so
skopeo's "last path component" rule and image-syncer's explicit
`src/repo: dst/repo` rules produce the same destination repositories.

skopeo keeps a blob-info cache (`/var/lib/containers/cache` for root,
`$XDG_DATA_HOME/containers/cache` otherwise) that remembers where blobs were
seen. The benchmark gives skopeo a fresh cache directory whenever it wipes
the destination (root: a private bind mount over the system directory via
`unshare -m`; others: `XDG_DATA_HOME`), so stale entries about wiped
repositories never add failed mount attempts, and the host's own cache is
never touched. image-syncer keeps no such state between runs.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

__all__ = [
    "CACHE_DIR_ROOT",
    "ensure_system_tools",
    "floor_argv",
    "image_syncer_argv",
    "image_syncer_env",
    "original_argv",
    "original_binary",
    "skopeo_argv",
    "skopeo_env",
    "unshare_works",
    "write_auth",
    "write_images",
    "write_skopeo_yaml",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR_ROOT = Path("/var/lib/containers/cache")
_APT_PACKAGES = {"skopeo": "skopeo", "docker-registry": "docker-registry", "curl": "curl"}


def _missing_packages(postgres: bool) -> list[str]:
    missing = [pkg for binary, pkg in _APT_PACKAGES.items() if shutil.which(binary) is None]
    if postgres and not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        missing.append("postgresql")
    return missing


def ensure_system_tools(*, postgres: bool = False) -> None:
    """apt-get install skopeo / docker-registry / curl (/ postgresql) if missing (root or sudo).

    Raises:
        RuntimeError: something is still missing afterwards.
    """
    missing = _missing_packages(postgres)
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    still = _missing_packages(postgres)
    if still:
        raise RuntimeError(f"still missing after apt-get: {', '.join(still)}")


def write_auth(path: Path, hosts: Sequence[str]) -> Path:
    """image-syncer auth file: every benchmark registry is plain HTTP (`insecure`)."""
    path.write_text(yaml.safe_dump({host: {"insecure": True} for host in hosts}))
    return path


def write_images(path: Path, src: str, dst: str, repositories: Sequence[str]) -> Path:
    """image-syncer images file: one all-tags rule per repository, same name at both ends."""
    rules = {f"{src}/{repo}": f"{dst}/{repo}" for repo in repositories}
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def write_skopeo_yaml(path: Path, src: str, repositories: Sequence[str]) -> Path:
    """`skopeo sync --src yaml` file: all tags of each repository (empty tag list)."""
    doc = {src: {"tls-verify": False, "images": {repo: [] for repo in repositories}}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def image_syncer_argv(
    auth: Path, images: Path, report: Path, proc: int, root: Path = PROJECT_ROOT
) -> list[str]:
    """`python ROOT/flows/sync.py --auth ... --images ... --proc N --report FILE`."""
    return [
        sys.executable,
        str(root / "flows" / "sync.py"),
        "--auth",
        str(auth),
        "--images",
        str(images),
        "--proc",
        str(proc),
        "--report",
        str(report),
    ]


def floor_argv(rules: int, model: str, report: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """`python ROOT/bench/floor.py --rules N --model M --report FILE`: Prefect's floor."""
    script = str(root / "bench" / "floor.py")
    return [
        sys.executable,
        script,
        "--rules",
        str(rules),
        "--model",
        model,
        "--report",
        str(report),
    ]


def image_syncer_env(prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
    """The caller's environment with a private PREFECT_HOME and the given Prefect API.

    Every `PREFECT_*` variable of the caller is dropped first (as for the API
    server), so no profile or setting of the caller leaks in. Without
    `api_url` (no `PREFECT_API_URL`) every run starts Prefect's temporary API
    server, which is what a plain `python flows/sync.py` does on a fresh
    machine.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(prefect_home)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def original_binary() -> Path | None:
    """The original Go image-syncer, if this machine has it (its column is absent otherwise).

    `IMAGE_SYNCER_ORIGINAL` names it; else `../shared/peers/image-syncer` next
    to the checkout, where the development machines keep a build of it.
    """
    named = os.environ.get("IMAGE_SYNCER_ORIGINAL")
    candidate = Path(named) if named else PROJECT_ROOT.parent / "shared" / "peers" / "image-syncer"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def original_argv(binary: Path, auth: Path, images: Path, proc: int) -> list[str]:
    """`image-syncer --auth ... --images ... --proc N`: the same files as ours (our contract)."""
    return [str(binary), "--auth", str(auth), "--images", str(images), "--proc", str(proc)]


def unshare_works() -> bool:
    """Whether `unshare -m` can bind-mount a private skopeo cache (root only)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    CACHE_DIR_ROOT.mkdir(parents=True, exist_ok=True)
    probe = ["unshare", "-m", "sh", "-c", f"mount --bind /tmp {CACHE_DIR_ROOT}"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def skopeo_argv(yaml_file: Path, dst: str, cache_dir: Path, *, private_mount: bool) -> list[str]:
    """`skopeo sync --src yaml --dest docker --dest-tls-verify=false YAML DST`.

    With `private_mount`, wrapped in `unshare -m sh -c 'mount --bind CACHE ...; exec skopeo'`
    (the wrapper execs, so the measured process tree is skopeo alone).
    """
    argv = [
        "skopeo",
        "sync",
        "--src",
        "yaml",
        "--dest",
        "docker",
        "--dest-tls-verify=false",
        str(yaml_file),
        dst,
    ]
    if not private_mount:
        return argv
    script = f'mount --bind "$0" {CACHE_DIR_ROOT} && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(cache_dir), *argv]


def skopeo_env(cache_dir: Path) -> dict[str, str]:
    """Environment for skopeo; for non-root users the cache follows `XDG_DATA_HOME`."""
    env = dict(os.environ)
    env["XDG_DATA_HOME"] = str(cache_dir)
    return env
