"""Cross-machine limits and secrets: Prefect global concurrency limits and Secret blocks.

Blob transfers to one destination registry are capped across every worker
by a global concurrency limit named `registry:<host>`, created on demand
with the configured size (an existing limit keeps the size an operator gave
it in the UI or CLI). Slots are taken only by tasks that actually move a
blob, one API round trip each.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from syncer_core.config.secretrefs import set_secret_resolver

__all__ = [
    "ensure_registry_limits",
    "install_secret_resolver",
    "registry_limit_name",
    "registry_slot",
]


def registry_limit_name(registry: str) -> str:
    """The global concurrency limit guarding blob transfers into `registry`."""
    return f"registry:{registry}"


def ensure_registry_limits(registries: Iterable[str], size: int) -> list[str]:
    """Create missing `registry:<host>` limits with `size` slots; return their names."""
    names = sorted({registry_limit_name(r) for r in registries})
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                # Another worker's run may create it between our read and this create.
                with suppress(ObjectAlreadyExists):
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=size)
                    )
    return names


def registry_slot(name: str | None) -> AbstractContextManager[object]:
    """Hold one slot of the named limit, or nothing when limits are off."""
    return nullcontext() if name is None else _slot(name)


@contextmanager
def _slot(name: str) -> Iterator[None]:
    # A lease renewal hiccup (API briefly unreachable) must not kill a transfer.
    with concurrency(name, occupy=1, strict=True, raise_on_lease_renewal_failure=False):
        yield


def _load_secret_block(name: str) -> str:
    value = Secret.load(name).get()  # type: ignore[union-attr]
    return str(value)


def install_secret_resolver() -> None:
    """Let auth files reference `{{ prefect.blocks.secret.<name> }}` in this process."""
    set_secret_resolver(_load_secret_block)
