"""The source stage of a blob copy: a download that resumes itself with `Range`.

After containers/image `docker/body_reader.go`: a resuming reader is one
stage of the pipeline, not a branch in the copy function. When the body is
cut mid-blob (a reset, a short read), the stage asks again with
`Range: bytes=N-`, where N is the first byte it has not yet yielded:

- a 206 must carry a `Content-Range` starting at N (anything else is a
  registry answering another question, and is not spliced in);
- a 200 (a CDN that ignores `Range`, container-libs PR #1114) is the whole
  blob again, so its first N bytes are skipped;
- any other answer is raised as the error it is.

Consumers see one uninterrupted byte stream. The destination side can also
`rewind()` the stage to an earlier offset, after an upload was cut and the
registry confirmed fewer bytes than were sent. Attempts are bounded: a
resume that brought no new byte counts towards `max_stalls`, and no blob
is resumed more than `max_resumes` times.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx

from syncer_core.errors import RegistryError, TransientRegistryError
from syncer_core.registry.responses import error_from_transport

if TYPE_CHECKING:
    from syncer_core.registry.client import RegistryClient

__all__ = ["BlobStream", "RangeOpener", "range_opener"]

#: `GET` the blob from byte `offset` up to `end` (exclusive; None: to the end of the blob),
#: with a `Range` header unless that is the whole blob.
RangeOpener = Callable[[int, int | None], httpx.Response]

_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
#: A bounded side request (a re-read after `rewind`) waits briefly for a connection.
_SIDE_REQUEST_TIMEOUT = httpx.Timeout(60.0, pool=5.0)


def range_opener(client: RegistryClient, path: str, what: str) -> RangeOpener:
    """The `RangeOpener` of a blob `path` on `client` (redirects followed).

    The main body (`end` None) is opened under the retry policy; a bounded
    side request is tried once, with a short wait for a pooled connection:
    `BlobStream` falls back to reopening the main body when it fails.
    """

    def open_at(offset: int, end: int | None = None) -> httpx.Response:
        last = "" if end is None else str(end - 1)
        headers = {"Range": f"bytes={offset}-{last}"} if offset or end else None
        timeout = httpx.USE_CLIENT_DEFAULT if end is None else _SIDE_REQUEST_TIMEOUT

        def request() -> httpx.Response:
            return client.send(
                "GET",
                path,
                what=what,
                stream=True,
                follow_redirects=True,
                headers=headers,
                timeout=timeout,
            )

        return request() if end is not None else client.retrying(request)

    return open_at


class BlobStream:
    """An open blob download: its size and an iterator of chunks that survives cuts.

    The body is read lazily in `chunk_size` pieces; nothing is buffered
    beyond one chunk. Without a `reopen` callable (or once the attempts are
    spent) a transport failure mid-stream becomes `TransientRegistryError`,
    so the copy can be retried as a whole.

    Attributes:
        size: the blob's length from the first response, if it sent one.
        resumes: how many times the body was re-requested after a cut.
        bytes_received: every body byte received, skipped and re-read ones included.
    """

    def __init__(
        self,
        response: httpx.Response,
        digest: str,
        chunk_size: int,
        registry: str,
        what: str,
        *,
        reopen: RangeOpener | None = None,
        max_resumes: int = 32,
        max_stalls: int = 3,
    ):
        self._response = response
        self._body = response.iter_bytes(chunk_size)  # one iterator: a pause does not end it
        self.digest = digest
        self._chunk_size = chunk_size
        self._registry = registry
        self._what = what
        self._reopen = reopen
        self._max_resumes = max_resumes
        self._max_stalls = max_stalls
        length = response.headers.get("content-length", "")
        self.size: int | None = int(length) if length.isdigit() else None
        self.resumes = 0
        self.bytes_received = 0
        self._offset = 0  # the blob offset of the next byte yielded
        self._skip = 0  # bytes of the current response to drop (a 200 to a Range)
        self._rewind_to: int | None = None
        self._stalls = 0
        self._last_resume_offset = -1

    @property
    def resumable(self) -> bool:
        """Whether the stream can be re-opened at an offset (`rewind`)."""
        return self._reopen is not None

    def iter_chunks(self) -> Iterator[bytes]:
        """Yield the body in chunks, resuming after cuts; raise once resuming is hopeless."""
        while True:
            if self._rewind_to is not None:
                yield from self._reread()
                continue
            try:
                for chunk in self._body:
                    piece = self._after_skip(chunk)
                    if piece:
                        self._offset += len(piece)
                        self._check_size()
                        yield piece
                    if self._rewind_to is not None:
                        break
                else:
                    if self.size is None or self._offset >= self.size:
                        return
                    self._resume(None, self._offset)  # a clean end short of the size: a cut too
                    self._replace(self._open(self._offset))
            except httpx.TransportError as exc:
                self._resume(exc, self._offset)
                self._replace(self._open(self._offset))

    def rewind(self, offset: int) -> None:
        """Make the next chunks re-read the blob from `offset` (an earlier byte).

        The bytes from `offset` up to where the stream is are fetched with a
        bounded `Range` request on the side; the main response stays open,
        paused, and continues afterwards, so nothing it had in flight is lost.
        """
        if self._reopen is None:
            raise RuntimeError(f"the stream of blob {self.digest} cannot be rewound")
        self._rewind_to = offset

    def close(self) -> None:
        """Close the current response."""
        self._response.close()

    def _reread(self) -> Iterator[bytes]:
        """Yield `[rewind offset, current offset)` from side requests, resuming them too."""
        assert self._rewind_to is not None
        start, end, self._rewind_to = self._rewind_to, self._offset, None
        while start < end:
            try:
                response, skip = self._open(start, end)
            except TransientRegistryError:
                # No side request to be had (say, every pooled connection is
                # held by a paused body like ours): re-read on the main one.
                self._replace(self._open(start))
                self._offset = start
                return
            try:
                for chunk in response.iter_bytes(self._chunk_size):
                    self.bytes_received += len(chunk)
                    dropped = min(skip, len(chunk))
                    skip -= dropped
                    piece = chunk[dropped : dropped + end - start]
                    if piece:
                        start += len(piece)
                        yield piece
                    if self._rewind_to is not None:
                        start, self._rewind_to = self._rewind_to, None
                        break
                    if start >= end:
                        break
                else:
                    if start < end:
                        self._resume(None, start)
            except httpx.TransportError as exc:
                self._resume(exc, start)
            finally:
                response.close()

    def _check_size(self) -> None:
        """A resumed answer must not run past the size the first one announced."""
        if self.size is not None and self._offset > self.size:
            raise RegistryError(
                f"{self._what}: more than the {self.size} bytes the blob has",
                registry=self._registry,
            )

    def _after_skip(self, chunk: bytes) -> bytes:
        self.bytes_received += len(chunk)
        if self._skip == 0:
            return chunk
        dropped = min(self._skip, len(chunk))
        self._skip -= dropped
        return chunk[dropped:]

    def _resume(self, exc: httpx.TransportError | None, offset: int) -> None:
        """Allow one more resume at `offset`, or raise the cut as the stream's error."""
        stalled = offset <= self._last_resume_offset
        self._stalls = self._stalls + 1 if stalled else 0
        if (
            self._reopen is None
            or self.resumes >= self._max_resumes
            or self._stalls >= self._max_stalls
        ):
            raise self._cut_error(exc, offset)
        self.resumes += 1
        self._last_resume_offset = offset

    def _cut_error(self, exc: httpx.TransportError | None, offset: int) -> RegistryError:
        if exc is not None:
            return error_from_transport(exc, registry=self._registry, what=self._what)
        return TransientRegistryError(
            f"{self._what}: body ended at byte {offset} of {self.size}",
            registry=self._registry,
        )

    def _replace(self, opened: tuple[httpx.Response, int]) -> None:
        self._response.close()
        self._response, self._skip = opened
        self._body = self._response.iter_bytes(self._chunk_size)

    def _open(self, offset: int, end: int | None = None) -> tuple[httpx.Response, int]:
        """A response whose body continues at `offset`, and the bytes to skip first.

        `end` bounds the request (`Range: bytes=offset-(end-1)`); the caller
        stops reading there either way.
        """
        assert self._reopen is not None
        response = self._reopen(offset, end)
        if response.status_code == 200:
            return response, offset  # the whole blob again: drop what we already have
        if response.status_code == 206 and _range_start(response) == offset:
            return response, 0
        response.close()
        raise RegistryError(
            f"{self._what}: asked for bytes {offset}- to resume, got {response.status_code} "
            f"with Content-Range {response.headers.get('content-range')!r}; "
            "the registry cannot resume this download",
            registry=self._registry,
            status_code=response.status_code,
        )


def _range_start(response: httpx.Response) -> int | None:
    """The first byte of a 206's `Content-Range: bytes S-E/T`, or None if malformed."""
    match = _CONTENT_RANGE_RE.match(response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None
