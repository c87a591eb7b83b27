"""Copy one blob with the engine's `copy_blob` and report its outcome and peak memory.

Run in a fresh interpreter (peak RSS is a high-water mark; in the pytest
process it would include whatever earlier tests allocated):

    python -m tests.support.resume_probe SOURCE_REF TARGET_REF DIGEST SIZE [--chunked N]

SOURCE_REF and TARGET_REF are `host:port/repository`; both registries are
plain HTTP (the fault proxies in front of a test registry). The pipeline is
the real one (resuming source → progress count → resuming upload), so the
faults the proxies inject are survived, or not, exactly as in a sync.
One JSON object is printed on stdout (RSS in KiB).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from syncer_core.reference import Reference
from syncer_core.registry import ClientOptions, RegistryAccess, RetryPolicy
from syncer_core.sync.inspect import BlobTransfer
from syncer_core.sync.session import SyncSession
from syncer_core.sync.transfer import copy_blob
from tests.support.stream_copy_probe import CHUNK, current_rss_kib, peak_rss_kib

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Copy the blob and print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("digest")
    parser.add_argument("size", type=int)
    parser.add_argument("--chunked", type=int, default=0, help="upload in PATCHes of N bytes")
    args = parser.parse_args(argv)
    source, target = Reference.parse(args.source), Reference.parse(args.target)
    session = SyncSession(
        lambda _: RegistryAccess(insecure=True),
        client_options=ClientOptions(chunk_size=CHUNK, upload_chunk_size=args.chunked),
        retry=RetryPolicy(base_delay=0.05),
    )
    try:
        # Warm up connections and lazy imports before the baseline.
        session.client(source).ping()
        session.client(target).ping()
        result: dict[str, object] = {"rss_start_kib": peak_rss_kib()}
        started = time.monotonic()
        outcome = copy_blob(session, BlobTransfer(source, target, args.digest, args.size))
        result.update(
            action=outcome.action,
            seconds=round(time.monotonic() - started, 2),
            rss_peak_kib=peak_rss_kib(),
            rss_current_kib=current_rss_kib(),
            progress_bytes=session.progress.snapshot().bytes_done,
            stored_size=session.client(target).head_blob(target.repository, args.digest),
        )
    finally:
        session.close()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
