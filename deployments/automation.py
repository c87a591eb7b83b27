"""Create (or replace) the automation of `deployments/automations/*.yaml` on the Prefect API.

    python deployments/automation.py --webhook-url URL [--file FILE] [--block NAME]

The webhook URL (often a secret: Slack and Teams URLs carry their token) is
saved in a Prefect Webhook block, never in the automation file, a parameter
or a log; `--webhook-url` may be omitted when `IMAGE_SYNCER_WEBHOOK_URL` is
set. The file's `{{ webhook_block_id }}` is replaced by that block's id, the
automation is validated by Prefect's own schema, and an automation of the
same name is replaced, so running this again is safe. Uses `PREFECT_API_URL`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import yaml

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

HERE = Path(__file__).resolve().parent
DEFAULT_FILE = HERE / "automations" / "failed-run-webhook.yaml"
PLACEHOLDER = "{{ webhook_block_id }}"


def save_webhook(name: str, url: str) -> UUID:
    """Save (or overwrite) the Webhook block `name` posting JSON to `url`; return its id."""
    from prefect.blocks.webhook import Webhook
    from pydantic import SecretStr

    block = Webhook(method="POST", url=SecretStr(url), headers={"Content-Type": "application/json"})
    block_id = block.save(name, overwrite=True)
    assert isinstance(block_id, UUID)  # `save` is sync-or-async; called from sync code here
    return block_id


def load_automation(path: Path, block_id: UUID) -> AutomationCore:
    """The automation in `path` with the webhook block filled in, validated by Prefect."""
    from prefect.events.schemas.automations import AutomationCore

    text = path.read_text().replace(PLACEHOLDER, str(block_id))
    return AutomationCore.model_validate(yaml.safe_load(text))


def create_automation(path: Path, block_id: UUID) -> UUID:
    """Replace the automation of the same name with the one in `path`; return its id."""
    from prefect.client.orchestration import get_client

    automation = load_automation(path, block_id)
    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(automation.name):
            client.delete_automation(existing.id)
        return client.create_automation(automation)


def main(argv: list[str] | None = None) -> int:
    """Create the webhook block and the automation; 2 on bad usage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhook-url", default=os.environ.get("IMAGE_SYNCER_WEBHOOK_URL"))
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="automation YAML")
    parser.add_argument("--block", default="image-syncer-alerts", help="Webhook block name")
    args = parser.parse_args(argv)
    if not args.webhook_url:
        print(
            "automation: error: --webhook-url (or IMAGE_SYNCER_WEBHOOK_URL) is required; "
            "give the URL the webhook should POST to",
            file=sys.stderr,
        )
        return 2
    if not args.file.is_file():
        print(f"automation: error: --file {args.file}: no such file", file=sys.stderr)
        return 2
    block_id = save_webhook(args.block, args.webhook_url)
    automation_id = create_automation(args.file, block_id)
    print(f"automation {automation_id} calls webhook block {args.block!r} on failed runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
