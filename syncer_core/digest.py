"""Content digests: validation, computation, and verification while streaming.

A digest is `algorithm:hex` (OCI image-spec "Digests"). We support the two
registered algorithms, sha256 and sha512, with lowercase hex of the exact
length; anything else is rejected rather than passed through unverified.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

from syncer_core.errors import DigestMismatchError

__all__ = [
    "ALGORITHMS",
    "CheckpointedHash",
    "DigestingIterator",
    "compute_digest",
    "is_digest",
    "parse_digest",
]

#: Supported algorithms and the length of their hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

# `\Z`, not `$`: `$` also matches before a trailing newline.
_DIGEST_RE = re.compile(r"^(sha256|sha512):([0-9a-f]+)\Z")


def parse_digest(value: str) -> tuple[str, str]:
    """Split and validate a digest.

    Args:
        value: a string such as `sha256:<64 hex>`.

    Returns:
        The `(algorithm, hex)` pair.

    Raises:
        ValueError: the string is not a supported, well-formed digest.
    """
    match = _DIGEST_RE.match(value)
    if not match or len(match.group(2)) != ALGORITHMS[match.group(1)]:
        raise ValueError(f"invalid digest {value!r}: expected sha256:<64 hex> or sha512:<128 hex>")
    return match.group(1), match.group(2)


def is_digest(value: str) -> bool:
    """Tell whether `value` is a supported, well-formed digest."""
    try:
        parse_digest(value)
    except ValueError:
        return False
    return True


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """Return the digest of in-memory bytes (manifests, configs; never blobs)."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class DigestingIterator:
    """Pass chunks through while hashing them; verify at the end of the stream.

    After containers/image `digesting_reader.go`: integrity is checked as the
    bytes flow, without a second pass or holding the blob. When the source is
    exhausted, the digest (and, if given, the size) is compared, and
    `DigestMismatchError` is raised *before the last chunk is released*, so a
    consumer that uploads the chunks never sends a complete bad body and the
    destination cannot commit it.
    """

    def __init__(self, chunks: Iterable[bytes], expected: str, size: int | None = None):
        self._chunks = chunks
        self.expected = expected
        self.expected_size = size
        algorithm, _ = parse_digest(expected)
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.bytes_seen = 0
        self._started = False

    def __iter__(self) -> Iterator[bytes]:
        # Single use: a replayed body (after a redirect or a 401) must not
        # silently become empty while still claiming the original length.
        if self._started:
            raise RuntimeError(f"the stream of blob {self.expected} was already consumed")
        self._started = True
        return self._verified()

    def _verified(self) -> Iterator[bytes]:
        # One chunk is held back until the source ends and the digest is
        # verified: with an explicit Content-Length the destination then never
        # receives the complete body of a bad stream, so it cannot commit it.
        held: bytes | None = None
        for chunk in self._chunks:
            if not chunk:
                continue
            self._hash.update(chunk)
            self.bytes_seen += len(chunk)
            if self.expected_size is not None and self.bytes_seen > self.expected_size:
                raise DigestMismatchError(
                    f"{self.expected_size} bytes",
                    f"more than {self.expected_size} bytes",
                    what=f"blob {self.expected} size",
                )
            if held is not None:
                yield held
            held = chunk
        self.verify()
        if held is not None:
            yield held

    def verify(self) -> None:
        """Raise `DigestMismatchError` unless everything seen matches."""
        actual = f"{self._algorithm}:{self._hash.hexdigest()}"
        if self.expected_size is not None and self.bytes_seen != self.expected_size:
            raise DigestMismatchError(
                f"{self.expected_size} bytes",
                f"{self.bytes_seen} bytes",
                what=f"blob {self.expected} size",
            )
        if actual != self.expected:
            raise DigestMismatchError(self.expected, actual, what="blob")


class CheckpointedHash:
    """A running digest that can go back to an earlier offset without re-reading from 0.

    An upload resumed at the offset a registry confirmed must hash exactly
    the bytes committed; the hash state is saved (`hashlib` objects `copy()`)
    at every chunk boundary, so going back costs at most one chunk of
    re-reading. States below the last confirmed offset are dropped: one
    state per chunk still unconfirmed (a few hundred bytes each).
    """

    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.offset = 0
        self._states: list[tuple[int, hashlib._Hash]] = [(0, self._hash.copy())]

    def update(self, chunk: bytes) -> None:
        """Hash `chunk` and save the state at its end."""
        self._hash.update(chunk)
        self.offset += len(chunk)
        self._states.append((self.offset, self._hash.copy()))

    def rewind(self, offset: int) -> int:
        """Return to the last saved state at or before `offset`; returns its offset."""
        while len(self._states) > 1 and self._states[-1][0] > offset:
            self._states.pop()
        self.offset, state = self._states[-1]
        self._hash = state.copy()
        return self.offset

    def confirm(self, offset: int) -> None:
        """Forget the states before `offset`, keeping the last one at or before it and 0.

        The state at 0 stays: a registry that loses the upload session makes
        the upload start over in a new one, from 0.
        """
        keep = 0
        for index, (saved, _) in enumerate(self._states):
            if saved <= offset:
                keep = index
        del self._states[1:keep]

    def digest(self) -> str:
        """`algorithm:hex` of everything hashed so far."""
        return f"{self.algorithm}:{self._hash.hexdigest()}"
