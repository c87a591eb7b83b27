"""The destination stage of a blob copy: an upload that continues its session after a cut.

The first attempt is a monolithic `PUT <Location>&digest=` with the whole
body (or `PATCH` chunks when a chunk size is set). When the connection dies
mid-way, the session is asked where it stands (`GET <Location>` → 204 with
`Range: 0-<last>`, distribution-spec end-13), the feed goes back to that
offset (re-reading the source from there) and the same session continues
with `PATCH`es from it, then the empty `PUT ...&digest=` commits. Where the
registry refuses to resume (404 `BLOB_UPLOAD_UNKNOWN`/`BLOB_UPLOAD_INVALID`:
distribution 2.8 invalidates a session whose request body was cut; ACR,
Azure SDK #29738), a new session starts from byte 0.

No peer resumes both sides: regclient resumes only inside its current chunk,
containers/image and crane restart the layer (skopeo #1223, #2419). Attempts
are bounded by `ClientOptions.max_resumes`, and recoveries that confirm no
new byte back off as the retry policy says and give up after its attempts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import httpx

from syncer_core.errors import (
    NotFoundError,
    RegistryError,
    SourceReadError,
    TransientRegistryError,
)
from syncer_core.registry.negotiation import UploadPlan
from syncer_core.registry.upload_feed import UploadFeed

if TYPE_CHECKING:
    from syncer_core.registry.uploads import BlobUploader

__all__ = ["ResumableUpload"]

_RANGE_RE = re.compile(r"^\s*(?:bytes=)?(\d+)-(\d+)\s*$")
_OCTETS = "application/octet-stream"


class ResumableUpload:
    """Upload one blob through one upload session (or its replacements).

    Attributes:
        url: the session's latest `Location` (cancel it if the upload fails).
        resumes: recoveries after a cut, continued or restarted.
        restarts: recoveries that had to open a new session.
    """

    def __init__(
        self,
        uploader: BlobUploader,
        repository: str,
        digest: str,
        feed: UploadFeed,
        url: str,
        *,
        plan: UploadPlan | None = None,
    ):
        self._uploader = uploader
        self._client = uploader.client
        self._repository = repository
        self._digest = digest
        self._feed = feed
        self.url = url
        self._plan = plan or UploadPlan()
        self._chunk_size = self._plan.chunk_size
        self._what = f"upload blob {digest} to {repository}"
        self.resumes = 0
        self.restarts = 0
        self._stalls = 0
        self._confirmed = 0

    def run(self) -> None:
        """Send the blob and commit it, resuming after cuts as far as allowed."""
        while True:
            try:
                self._send()
                return
            except SourceReadError:
                raise  # the source's failure: nothing to resume at the destination
            except TransientRegistryError as error:
                if self._recover(error):
                    return
            except RegistryError as error:
                self._renegotiate(error)

    # -- sending ----------------------------------------------------------------------------

    def _send(self) -> None:
        feed = self._feed
        if feed.position == 0 and self._chunk_size == 0 and self.resumes == 0:
            self._put(feed.remaining())
            return
        while not feed.finished:
            self._patch()
        self._put(0)

    def _put(self, length: int | None) -> None:
        """The committing `PUT ...&digest=`, carrying `length` bytes (None: the rest, unframed)."""
        headers = {"Content-Type": _OCTETS}
        if length is not None:
            headers["Content-Length"] = str(length)
        target = httpx.URL(self.url).copy_merge_params({"digest": self._digest})
        body: Iterable[bytes] | bytes = b""
        if length == 0:
            self._feed.reach_end()  # verifies an empty blob, or one fully PATCHed
        else:
            body = self._feed.pieces(length)
        self._uploader.commit(target, self._what, content=body, headers=headers)

    def _patch(self) -> None:
        """One `PATCH` from the feed's position: a chunk, or the whole rest when unchunked.

        A chunk is read into memory before it is sent (at most one chunk is
        held): a source that fails or does not verify then fails before the
        request, and the session stays valid, with nothing partial in it.
        The chunk stays in the source's pieces: one large joined buffer per
        chunk made glibc keep ~150 MB of freed heap (measured with 8 MiB chunks).
        """
        feed = self._feed
        start = feed.position
        body: Iterable[bytes] | bytes
        if self._chunk_size:
            held = list(feed.pieces(self._chunk_size))
            length, body = sum(map(len, held)), iter(held)
        else:
            remaining = feed.remaining()
            assert remaining is not None, "only a resumed upload, of known size, gets here"
            length, body = remaining, feed.pieces(remaining)
        headers = {"Content-Type": _OCTETS, "Content-Length": str(length)}
        if length:
            headers["Content-Range"] = f"{start}-{start + length - 1}"
        response = self._uploader.send_body(
            "PATCH", self.url, self._what, content=body, headers=headers
        )
        self.url = self._uploader.location(response, self._what)
        self._check_confirmed(response)

    def _check_confirmed(self, response: httpx.Response) -> None:
        """Hold the registry to the offset it reports after a PATCH."""
        confirmed = _range_end(response.headers.get("range"))
        if confirmed is None:
            confirmed = self._feed.position
        if confirmed != self._feed.position and self._session_offset() == self._feed.position:
            # ECR stores every chunk but its PATCH answers keep the first one's
            # Range (aws/containers-roadmap #2831): the session's own status
            # (GET), not that stale header, says whether the bytes arrived.
            confirmed = self._feed.position
        if confirmed != self._feed.position:
            raise TransientRegistryError(
                f"{self._what}: the registry confirmed {confirmed} of the "
                f"{self._feed.position} bytes sent",
                registry=self._client.registry,
            )
        self._confirmed = confirmed
        self._feed.confirm(confirmed)

    # -- recovering -------------------------------------------------------------------------

    def _recover(self, error: TransientRegistryError) -> bool:
        """Put the feed at the offset the session holds; True if the blob is already there.

        Raises `error` when the upload cannot be resumed (a one-shot source,
        the attempts spent, or no progress for as long as the retry policy
        allows).
        """
        feed = self._feed
        if not feed.resumable or self.resumes >= self._client.options.max_resumes:
            raise error
        self._wait_if_stalled(error)
        self.resumes += 1
        if feed.position == feed.size and self._committed_meanwhile():
            return True  # the commit went through; only its answer was lost
        offset = self._realign()
        self._stalls = self._stalls + 1 if offset <= self._confirmed else 0
        self._confirmed = offset
        return False

    def _renegotiate(self, error: RegistryError) -> None:
        """After a body refused for its size, continue in (smaller) chunks, or raise."""
        chunk = self._plan.refused(error.status_code, self._chunk_size)
        if chunk is None:
            raise error
        self._chunk_size = chunk
        if not self._feed.resumable:
            raise TransientRegistryError(
                f"{self._what}: {error}; the next attempt uploads in chunks of {chunk} bytes",
                registry=self._client.registry,
                status_code=error.status_code,
            ) from error
        self.resumes += 1  # counted with the resumes: it is bounded by them too
        if self.resumes > self._client.options.max_resumes:
            raise error
        self._confirmed = self._realign()

    def _wait_if_stalled(self, error: TransientRegistryError) -> None:
        if self._stalls == 0:
            return
        wait = self._client.retry.delay(self._stalls, error)
        if wait is None:
            raise error
        time.sleep(wait)

    def _committed_meanwhile(self) -> bool:
        size = self._client.head_blob(self._repository, self._digest)
        return size is not None and size == self._feed.size

    def _session_offset(self) -> int | None:
        """Bytes the session holds (`GET` on its URL), or None if it cannot be continued."""
        client = self._client
        what = f"status of {self._what}"
        try:
            response = client.retrying(lambda: client.send("GET", self.url, what=what))
        except NotFoundError:
            return None  # BLOB_UPLOAD_UNKNOWN / BLOB_UPLOAD_INVALID: the session is gone
        except TransientRegistryError:
            raise
        except RegistryError:
            return None  # any other refusal: start over rather than guess
        value = response.headers.get("range", "")
        end = _range_end(value)
        if end is None or value.strip().removeprefix("bytes=") == "0-0":
            return None  # no Range, or `0-0` (0 or 1 byte): ambiguous, start over
        if response.headers.get("location"):
            self.url = self._uploader.location(response, what)
        return end

    def _realign(self) -> int:
        """Put the feed where the session stands (a new session: at 0); returns the offset."""
        offset = self._session_offset()
        if offset is None or offset > self._feed.position:
            self._restart()
            offset = 0
        self._feed.rewind_to(offset)
        self._feed.confirm(offset)
        return offset

    def _restart(self) -> None:
        self._uploader.cancel(self.url)
        self.url = self._uploader.start(self._repository)
        self.restarts += 1


def _range_end(value: str | None) -> int | None:
    """`0-<last>` → `last + 1` (the bytes held), or None without a usable header."""
    match = _RANGE_RE.match(value or "")
    if match is None or int(match.group(1)) != 0:
        return None
    return int(match.group(2)) + 1
