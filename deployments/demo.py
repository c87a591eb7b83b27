"""Demo of the main job: two local registries, demo images, one `python flows/sync.py` run.

Starts Debian's `docker-registry` on 127.0.0.1:5101 (source) and :5102
(destination) with storage under `.demo/`, seeds demo images (several tags,
a multi-arch OCI index with an attestation entry, a Docker manifest list,
an OCI image), then runs the sync with `deployments/examples/auth.yaml` and
`images.yaml` on Prefect's embedded local API. Run it again: everything is
skipped. `--fresh` empties both registries first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncer_core.registry import RegistryClient  # noqa: E402
from tests.support.images import build_image, build_index, push_image  # noqa: E402
from tests.support.registry_server import RegistryServer, access_for  # noqa: E402

SOURCE_PORT, DESTINATION_PORT = 5101, 5102
EXAMPLES = ROOT / "deployments" / "examples"
PINNED_OCI = "sha256:c7b641d6cafb0409a74004119d3f49f591ce9c4f6eb3bf8861ca7e10d2b7f10c"


def start_registry(workdir: Path, port: int) -> RegistryServer:
    """Start a plain-HTTP registry on a fixed loopback port with storage in `workdir`."""
    server = RegistryServer("plain", workdir)
    server.port = port
    return server.start()


def seed(server: RegistryServer) -> None:
    """Push the demo images (deterministic bytes, so re-seeding changes nothing)."""
    with RegistryClient(server.host, access=access_for(server)) as client:
        for seed_value, tag in enumerate(("1.0", "1.1", "2.0")):
            image = build_image(seed_value, layer_sizes=(256 * 1024, 512 * 1024))
            push_image(client, "demo/app", tag, image)
        push_image(client, "demo/multi", "v1", build_index(10, attestation="unknown"))
        push_image(client, "demo/multi-docker", "v1", build_index(11, image_format="docker"))
        oci = build_image(20, image_format="oci")
        assert oci.digest == PINNED_OCI, "demo image changed: update images.yaml's digest rule"
        push_image(client, "demo/oci", "v1", oci)


def run_sync(state: Path, extra: list[str]) -> int:
    """Run the main job exactly as a user would."""
    env = dict(os.environ, DEMO_DESTINATION=f"127.0.0.1:{DESTINATION_PORT}")
    env.setdefault("PREFECT_HOME", str(state / "prefect"))
    command = [
        sys.executable,
        str(ROOT / "flows" / "sync.py"),
        "--auth",
        str(EXAMPLES / "auth.yaml"),
        "--images",
        str(EXAMPLES / "images.yaml"),
        "--registry",
        f"127.0.0.1:{DESTINATION_PORT}",
        "--report",
        str(state / "report.json"),
        "--output-success-images",
        str(state / "synced-images.yaml"),
        *extra,
    ]
    print("$", " ".join(command[1:]), flush=True)
    return subprocess.run(command, env=env, check=False).returncode


def main() -> int:
    """Start the registries, seed, sync, stop the registries; return the sync's exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="empty both registries first")
    parser.add_argument("--state", default=str(ROOT / ".demo"), help="where registries keep data")
    args, extra = parser.parse_known_args()
    state = Path(args.state)
    if args.fresh:
        shutil.rmtree(state / "source", ignore_errors=True)
        shutil.rmtree(state / "destination", ignore_errors=True)
    source = start_registry(state / "source", SOURCE_PORT)
    destination = start_registry(state / "destination", DESTINATION_PORT)
    try:
        seed(source)
        print(f"source {source.url}, destination {destination.url}; seeded demo images", flush=True)
        code = run_sync(state, extra)
        print(f"report: {state / 'report.json'}; run again to see everything skipped")
        return code
    finally:
        source.stop()
        destination.stop()


if __name__ == "__main__":
    sys.exit(main())
