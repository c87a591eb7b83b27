"""How a registry wants blobs uploaded: learned once per registry client, then reused.

The first upload to a registry is monolithic (one `PUT` with the body, the
cheapest: two requests). Registries differ (spec notes C.3): ACR refuses a
monolithic body over ~20 MB with 413 (Harbor #23015), some accept only
`PATCH`es, GHCR refuses a `PATCH` over 4 MiB with 416 (ocx-sh/ocx PR #237),
ECR needs parts of at least 5 MB (announced, where it is, as
`OCI-Chunk-Min-Length`). So:

- a refused monolithic `PUT` (413, 416, 405) switches to `PATCH` chunks of
  the configured `chunk_size` (auth file), else `FALLBACK_CHUNK`;
- a refused `PATCH` (413, 416) halves the chunk, never below the registry's
  `OCI-Chunk-Min-Length` nor `MIN_CHUNK`;
- what worked is kept on the client, so the next blob does not pay for the
  probe again (regclient keeps the same per-host knowledge in `blobChunk`).
"""

from __future__ import annotations

import threading

__all__ = ["FALLBACK_CHUNK", "MIN_CHUNK", "UploadPlan"]

#: Chunk size after a refused monolithic upload, unless the auth file sets one.
FALLBACK_CHUNK = 8 * 1024 * 1024
#: No chunk is made smaller than this by halving (the spec's smallest sane part).
MIN_CHUNK = 256 * 1024
#: Statuses that mean "this body is too large / not accepted this way".
_MONOLITHIC_REFUSALS = frozenset({405, 413, 416})
_PATCH_REFUSALS = frozenset({413, 416})


class UploadPlan:
    """The upload mode of one registry: monolithic (`chunk_size == 0`) or chunked.

    Args:
        chunk_size: the configured chunk size (auth file `chunk_size`, or
            `ClientOptions.upload_chunk_size`); 0 starts monolithic.
    """

    def __init__(self, chunk_size: int = 0):
        self.configured = chunk_size
        self.chunk_size = chunk_size
        self.min_chunk = 0
        self.fallbacks: list[str] = []
        self._lock = threading.Lock()

    def announce_min_chunk(self, value: str | None) -> None:
        """Honour an `OCI-Chunk-Min-Length` header from the registry."""
        if value and value.strip().isdigit():
            with self._lock:
                self.min_chunk = int(value)
                if 0 < self.chunk_size < self.min_chunk:
                    self.chunk_size = self.min_chunk

    def refused(self, status: int | None, chunk_size: int) -> int | None:
        """The chunk size to retry with after `status` refused a body, or None.

        `chunk_size` is the size the refused body was sent with (0:
        monolithic); None means nothing smaller can be tried.
        """
        with self._lock:
            if chunk_size == 0:
                if status not in _MONOLITHIC_REFUSALS:
                    return None
                proposal = self.configured or FALLBACK_CHUNK
            else:
                if status not in _PATCH_REFUSALS:
                    return None
                proposal = chunk_size // 2
            floor = max(self.min_chunk, MIN_CHUNK if chunk_size else 0)
            proposal = max(proposal, floor)
            if chunk_size and proposal >= chunk_size:
                return None  # already at the floor: the registry refuses every size we may send
            # Concurrent uploads may learn the same thing: keep the smallest answer.
            self.chunk_size = proposal if self.chunk_size == 0 else min(self.chunk_size, proposal)
            self.fallbacks.append(f"{status}: chunks of {proposal} bytes")
            return self.chunk_size
