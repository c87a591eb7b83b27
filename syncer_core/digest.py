"""Content digests: validation, computation, and a hash that can rewind to a checkpoint.

A digest is `algorithm:hex` (OCI image-spec "Digests"). We support the two
registered algorithms, sha256 and sha512, with lowercase hex of the exact
length; anything else is rejected rather than passed through unverified.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "ALGORITHMS",
    "CheckpointedHash",
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
