"""Measure the peak memory of a streamed blob push and a registry-to-registry copy.

Run in a fresh interpreter, because peak RSS is a high-water mark: in the
pytest process it would already include whatever earlier tests allocated.

    python -m tests.support.stream_copy_probe SOURCE_HOST TARGET_HOST REPOSITORY SIZE

The blob comes from `pattern_chunks`, a deterministic generator, so neither
this process nor the test ever holds it. Steps, each measured:

1. hash the generated stream to learn its digest;
2. `push_blob` the generated stream to the source registry;
3. `open_blob` on the source piped into `push_blob` on the target;
4. with `--control-bytes N`, deliberately hold N bytes, proving the
   measurement would catch a client that buffers.

One JSON object is printed on stdout (sizes in bytes, RSS in KiB, times in s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import struct
import sys
import time
from collections.abc import Iterator

from syncer_core.registry import ClientOptions, RegistryAccess, RegistryClient

__all__ = ["CHUNK", "current_rss_kib", "main", "pattern_chunks", "peak_rss_kib"]

#: Bytes per generated chunk (also the client's read chunk size).
CHUNK = 1024 * 1024


def pattern_chunks(size: int, *, seed: int = 0, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield `size` deterministic, incompressible-looking bytes in `chunk` pieces.

    One random block is made from the seed; each chunk is that block with its
    index stamped in front, so every chunk differs and generating is cheap.
    """
    block = random.Random(seed).randbytes(chunk)
    index, sent = 0, 0
    while sent < size:
        piece = struct.pack(">Q", index) + block[8:]
        piece = piece[: size - sent]
        sent += len(piece)
        index += 1
        yield piece


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB.

    Linux `VmHWM`, the high-water mark of the process's own address space.
    `ru_maxrss` is not usable here: it survives `exec`, so a child spawned by
    a big pytest process (via vfork) starts with the parent's peak, which can
    hide any growth (the `--control-bytes` check caught exactly that).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kib() -> int:
    """The resident set size right now, in KiB (Linux `/proc/self/statm`)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() // 1024


def _digest(size: int, seed: int) -> str:
    hasher = hashlib.sha256()
    for piece in pattern_chunks(size, seed=seed):
        hasher.update(piece)
    return f"sha256:{hasher.hexdigest()}"


def _client(host: str) -> RegistryClient:
    return RegistryClient(
        host, access=RegistryAccess(insecure=True), options=ClientOptions(chunk_size=CHUNK)
    )


def main(argv: list[str] | None = None) -> int:
    """Run the three steps and print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("repository")
    parser.add_argument("size", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control-bytes", type=int, default=0)
    args = parser.parse_args(argv)
    with _client(args.source) as source, _client(args.target) as target:
        # Warm up connections, TLS/HTTP machinery and lazy imports before the baseline.
        source.ping()
        target.ping()
        result: dict[str, object] = {
            "size": args.size,
            "rss_start_kib": peak_rss_kib(),
            "rss_current_start_kib": current_rss_kib(),
            "ru_maxrss_start_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
        started = time.monotonic()
        digest = _digest(args.size, args.seed)
        result.update(digest=digest, hash_seconds=time.monotonic() - started)

        started = time.monotonic()
        source.push_blob(
            args.repository, digest, pattern_chunks(args.size, seed=args.seed), size=args.size
        )
        result.update(push_seconds=time.monotonic() - started, rss_after_push_kib=peak_rss_kib())

        started = time.monotonic()
        with source.open_blob(args.repository, digest) as blob:
            result["source_size"] = blob.size
            target.push_blob(args.repository, digest, blob.iter_chunks(), size=blob.size)
        result.update(copy_seconds=time.monotonic() - started, rss_after_copy_kib=peak_rss_kib())
        result["ru_maxrss_after_copy_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.control_bytes:
        held = b"".join(pattern_chunks(args.control_bytes, seed=args.seed + 1))
        result["rss_after_control_kib"] = peak_rss_kib()
        del held
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
