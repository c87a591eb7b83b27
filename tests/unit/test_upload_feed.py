"""`UploadFeed` and `CheckpointedHash`: the digest stays exact across rewinds to any offset."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer_core.digest import CheckpointedHash
from syncer_core.errors import DigestMismatchError
from syncer_core.registry.upload_feed import MemoryBlob, UploadFeed

DATA = bytes(range(256)) * 40  # 10,240 bytes
CHUNK = 1000


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Source:
    """A re-readable source in CHUNK pieces that counts what it serves, like `BlobStream`."""

    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0
        self.served = 0
        self.rewinds: list[int] = []

    def __iter__(self) -> Iterator[bytes]:
        while self.offset < len(self.data):
            piece = self.data[self.offset : self.offset + CHUNK]
            self.offset += len(piece)
            self.served += len(piece)
            yield piece

    def rewind(self, offset: int) -> None:
        self.rewinds.append(offset)
        self.offset = offset


def test_checkpointed_hash_rewinds_to_the_last_state_at_or_before_an_offset() -> None:
    hasher = CheckpointedHash("sha256")
    for start in range(0, 3000, CHUNK):
        hasher.update(DATA[start : start + CHUNK])
    assert hasher.rewind(2500) == 2000
    hasher.update(DATA[2000:3000])
    assert hasher.digest() == sha256(DATA[:3000])
    hasher.confirm(2500)
    # States between 0 and the confirmed offset are gone; 0 stays (a new session starts there).
    assert hasher.rewind(2400) == 2000
    assert hasher.rewind(1500) == 0


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(DATA)), max_size=5))
def test_rewinding_to_confirmed_offsets_still_verifies_exactly(cuts: list[int]) -> None:
    """Whatever offsets a registry confirms, the bytes handed out from there are the blob's."""
    source = Source(DATA)
    feed = UploadFeed(source, sha256(DATA), len(DATA), source.rewind)
    sent = bytearray()
    for cut in sorted(cuts):
        sent.extend(b"".join(feed.pieces(max(0, cut - len(sent)))))
        confirmed = cut // 2 + len(sent) // 2  # somewhere not after what was sent
        confirmed = min(confirmed, len(sent))
        feed.rewind_to(confirmed)
        del sent[confirmed:]
        assert feed.position == confirmed
    sent.extend(b"".join(feed.pieces()))
    assert bytes(sent) == DATA
    assert feed.finished


def test_a_rewind_rereads_at_most_one_chunk_before_the_offset() -> None:
    source = Source(DATA)
    feed = UploadFeed(source, sha256(DATA), len(DATA), source.rewind)
    b"".join(feed.pieces(7500))
    feed.rewind_to(6200)
    assert source.rewinds == [6000]
    assert b"".join(feed.pieces()) == DATA[6200:]


def test_the_last_piece_is_withheld_when_the_digest_is_wrong() -> None:
    source = Source(DATA)
    feed = UploadFeed(source, sha256(b"other"), len(DATA), source.rewind)
    received = bytearray()
    with pytest.raises(DigestMismatchError):
        for piece in feed.pieces():
            received.extend(piece)
    assert bytes(received) == DATA[:10_000]  # all but the last (240-byte) chunk


def test_a_source_longer_than_the_size_is_refused() -> None:
    feed = UploadFeed([DATA, b"x"], sha256(DATA), len(DATA) - 1)
    with pytest.raises(DigestMismatchError, match="more than"):
        b"".join(feed.pieces())


def test_an_empty_blob_is_verified_without_sending_a_byte() -> None:
    UploadFeed([], sha256(b""), 0).reach_end()
    with pytest.raises(DigestMismatchError):
        UploadFeed([], sha256(b"x"), 0).reach_end()


def test_unknown_size_verifies_before_releasing_the_last_chunk() -> None:
    feed = UploadFeed(iter([b"ab", b"cd"]), sha256(b"abcX"), None)
    pieces = feed.pieces()
    assert next(pieces) == b"ab"
    with pytest.raises(DigestMismatchError):
        next(pieces)
    assert not feed.resumable


def test_an_in_memory_blob_is_re_readable_from_any_offset() -> None:
    blob = MemoryBlob(DATA, chunk_size=CHUNK)
    feed = UploadFeed(blob, sha256(DATA), len(DATA), blob.rewind)
    b"".join(feed.pieces(4321))
    feed.rewind_to(1234)
    assert b"".join(feed.pieces()) == DATA[1234:]


def test_a_new_session_after_confirmed_chunks_can_start_again_from_zero():
    """A registry that loses its upload session makes the upload start over at 0."""
    hasher = CheckpointedHash("sha256")
    for chunk in (b"a" * 10, b"b" * 10, b"c" * 10):
        hasher.update(chunk)
    hasher.confirm(20)

    assert hasher.rewind(0) == 0
    hasher.update(b"x")
    assert hasher.digest() == "sha256:" + hashlib.sha256(b"x").hexdigest()
