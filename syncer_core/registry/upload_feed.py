"""The bytes an upload sends: source chunks, hashed with checkpoints, verified before the end.

`UploadFeed` sits between the source stage (a resuming `BlobStream`, or
any iterable of chunks) and the requests of an upload. It hands out the
blob from its current `position` in bounded pieces, hashes every byte as it
is pulled, and releases the blob's last piece only once the digest and the
size are verified, so with an explicit `Content-Length` the destination
never receives the complete body of a bad stream and cannot commit it.

After a cut, `rewind_to(offset)` moves it back to the offset the registry
confirmed: the hash goes back to its last checkpoint at or before it, the
source is re-read from there, and the bytes up to `offset` are hashed again
without being sent. The digest is therefore always over exactly the bytes
committed. At most one source chunk is held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from syncer_core.digest import CheckpointedHash, parse_digest
from syncer_core.errors import DigestMismatchError, SourceReadError, TransientRegistryError

__all__ = ["MemoryBlob", "UploadFeed"]


class MemoryBlob:
    """A blob held in memory (configs, small documents) as a re-readable source.

    With its `rewind` an upload of in-memory bytes resumes after a cut like
    a streamed one (a keep-alive connection a proxy closed under the PUT).
    """

    def __init__(self, data: bytes, chunk_size: int = 1024 * 1024):
        self._data = data
        self._chunk_size = chunk_size
        self._offset = 0

    def __iter__(self) -> Iterator[bytes]:
        while self._offset < len(self._data):
            piece = self._data[self._offset : self._offset + self._chunk_size]
            self._offset += len(piece)
            yield piece

    def rewind(self, offset: int) -> None:
        """Continue from `offset`."""
        self._offset = offset


class UploadFeed:
    """A blob's bytes from `position` on, for one or several upload requests.

    Args:
        chunks: the source stream.
        digest: the digest the bytes must hash to.
        size: the expected length, if known.
        rewind: makes `chunks` continue from an earlier offset (the source
            stage's `rewind`), or None when the source cannot be re-read.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        digest: str,
        size: int | None,
        rewind: Callable[[int], None] | None = None,
    ):
        algorithm, _ = parse_digest(digest)
        self.expected = digest
        self.size = size
        self._source = iter(chunks)
        self._rewind = rewind
        self._hash = CheckpointedHash(algorithm)
        self._pending = b""  # pulled and hashed, not yet handed out
        self._ahead: bytes | None = None  # pulled, not hashed (size unknown only)
        self._ended = False
        self.position = 0  # the blob offset of the next byte handed out

    @property
    def resumable(self) -> bool:
        """Whether `rewind_to` can work: a re-readable source of known size."""
        return self._rewind is not None and self.size is not None

    @property
    def finished(self) -> bool:
        """Whether every byte has been handed out (and verified)."""
        return self._ended and not self._pending

    def remaining(self) -> int | None:
        """Bytes still to hand out, if the size is known."""
        return None if self.size is None else self.size - self.position

    def pieces(self, limit: int | None = None) -> Iterator[bytes]:
        """Hand out up to `limit` bytes (None: to the end), one source chunk at a time."""
        remaining = limit
        while remaining is None or remaining > 0:
            if not self._pending and not self._fill():
                return
            piece = self._pending if remaining is None else self._pending[:remaining]
            self._pending = self._pending[len(piece) :]
            self.position += len(piece)
            if remaining is not None:
                remaining -= len(piece)
            yield piece

    def reach_end(self) -> None:
        """Make sure the stream is over (and so verified) without handing out a byte."""
        if self._pending or (not self._ended and self._fill()):
            raise DigestMismatchError(
                f"{self.position} bytes", "more bytes", what=f"blob {self.expected} size"
            )

    def confirm(self, offset: int) -> None:
        """The registry holds bytes `[0, offset)`: earlier hash checkpoints can go."""
        self._hash.confirm(offset)

    def rewind_to(self, offset: int) -> None:
        """Continue from `offset` (≤ `position`), re-reading the source from a checkpoint."""
        if self._rewind is None:
            raise RuntimeError(f"the source of blob {self.expected} cannot be re-read")
        start = self._hash.rewind(offset)
        self._rewind(start)
        self._pending, self._ahead, self._ended = b"", None, False
        self.position = start
        for _ in self.pieces(offset - start):
            pass  # bytes the registry has: hashed again, not sent

    def _fill(self) -> bool:
        """Pull the next source chunk into `_pending`; False at the end of the stream."""
        if self._ended:
            return False
        chunk = self._pull()
        if chunk is None:
            self._ended = True
            self.verify()
            return False
        self._hash.update(chunk)
        self._pending = chunk
        if self.size is not None and self._hash.offset > self.size:
            raise self._too_long(self.size)
        if self._is_last():
            self._ended = True
            self.verify()  # before the last piece is released
        return True

    def _pull(self) -> bytes | None:
        if self._ahead is not None:
            chunk, self._ahead = self._ahead, None
            return chunk
        return self._next_chunk()

    def _next_chunk(self) -> bytes | None:
        """The source's next non-empty chunk; a registry failure there is the source's."""
        try:
            return next((c for c in self._source if c), None)
        except SourceReadError:
            raise
        except TransientRegistryError as error:
            raise SourceReadError(
                f"reading blob {self.expected} from the source at byte {self._hash.offset}: "
                f"{error}",
                registry=error.registry,
                status_code=error.status_code,
                errors=error.errors,
            ) from error

    def _is_last(self) -> bool:
        """Whether the chunk just pulled ends the blob.

        A re-readable source (a `BlobStream`, which holds itself to the
        blob's size) is not asked past the size: its stream must stay open for
        a rewind after a cut commit. Any other source must also end there.
        """
        if self.size is not None and (self._hash.offset < self.size or self.resumable):
            return self._hash.offset == self.size
        self._ahead = self._next_chunk()
        if self._ahead is not None and self.size is not None:
            raise self._too_long(self.size)
        return self._ahead is None

    def _too_long(self, size: int) -> DigestMismatchError:
        return DigestMismatchError(
            f"{size} bytes", f"more than {size} bytes", what=f"blob {self.expected} size"
        )

    def verify(self) -> None:
        """Raise `DigestMismatchError` unless everything pulled matches size and digest."""
        seen = self._hash.offset
        if self.size is not None and seen != self.size:
            raise DigestMismatchError(
                f"{self.size} bytes", f"{seen} bytes", what=f"blob {self.expected} size"
            )
        actual = self._hash.digest()
        if actual != self.expected:
            raise DigestMismatchError(self.expected, actual, what="blob")
