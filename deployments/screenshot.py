"""Screenshot a flow run's page in the Prefect UI with headless Chromium.

    python deployments/screenshot.py FLOW_RUN_ID [--ui http://127.0.0.1:4200] [--out run.png]

Needs Debian's `chromium` (`apt-get install -y chromium`) and a running
`prefect server start` (the UI is served by the server). The image is for
looking at, not for committing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["screenshot"]

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,1000",
    "--virtual-time-budget=15000",
]


def screenshot(url: str, out: Path) -> Path:
    """Render `url` in headless Chromium and save a PNG to `out`."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        command = [browser, *_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", url]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    if not out.is_file():
        raise SystemExit(f"chromium produced no screenshot for {url}")
    return out


def main() -> int:
    """Parse arguments and take the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flow_run_id")
    parser.add_argument("--ui", default="http://127.0.0.1:4200")
    parser.add_argument("--out", default="flow-run.png")
    args = parser.parse_args()
    url = f"{args.ui.rstrip('/')}/runs/flow-run/{args.flow_run_id}"
    print(screenshot(url, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
