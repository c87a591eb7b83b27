"""Quirks of named registries that the zoo's relay plays (see `profiles.py` for who does what)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.support.zoo import wire
from tests.support.zoo.stats import ProxyRequest
from tests.support.zoo.wire import Request

if TYPE_CHECKING:
    from tests.support.zoo.relay import FaultProxy

__all__ = ["Quirks"]


@dataclass
class Quirks:
    """The behaviours of one registry that distribution 2.8 does not have (all off by default)."""

    def refusal(self, request: Request) -> wire.Answer | None:
        """An answer the registry gives instead of serving `request`, or None."""
        return None

    def response(
        self, request: Request, status: int, headers: list[tuple[str, str]]
    ) -> tuple[int, list[tuple[str, str]]]:
        """The registry's answer to `request` as this registry would give it."""
        return status, headers

    async def serve(
        self,
        proxy: FaultProxy,
        request: Request,
        record: ProxyRequest,
        writer: asyncio.StreamWriter,
    ) -> bool | None:
        """Serve `request` another way than forwarding it (None: forward it)."""
        return None
