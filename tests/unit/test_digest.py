"""Digest validation, computation, and verification while streaming (`UploadFeed`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from syncer_core.digest import ALGORITHMS, compute_digest, is_digest, parse_digest
from syncer_core.errors import DigestMismatchError
from syncer_core.registry.upload_feed import UploadFeed

EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2
CHUNKS = [b"hello ", b"streaming ", b"world"]
DATA = b"".join(CHUNKS)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


class Source:
    """An iterable of chunks that records how far it was read."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks
        self.pulled = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk
        self.exhausted = True


def consume(feed: UploadFeed) -> tuple[list[bytes], BaseException | None]:
    """Read like an uploader: collect pieces until the feed ends or raises."""
    received: list[bytes] = []
    try:
        for chunk in feed.pieces():
            received.append(chunk)
    except Exception as exc:
        return received, exc
    return received, None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(f"sha256:{HEX64}", ("sha256", HEX64), id="sha256"),
        pytest.param(f"sha512:{HEX128}", ("sha512", HEX128), id="sha512"),
        pytest.param(EMPTY_SHA256, ("sha256", EMPTY_SHA256[7:]), id="empty-blob"),
    ],
)
def test_parse_digest_valid(value: str, expected: tuple[str, str]) -> None:
    assert parse_digest(value) == expected
    assert is_digest(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("sha256", id="algorithm-only"),
        pytest.param("sha256:", id="no-hex"),
        pytest.param(HEX64, id="no-algorithm"),
        pytest.param(f":{HEX64}", id="empty-algorithm"),
        pytest.param(f"sha256:{HEX64[:-1]}", id="sha256-short"),
        pytest.param(f"sha256:{HEX64}0", id="sha256-long"),
        pytest.param(f"sha512:{HEX64}", id="sha512-short"),
        pytest.param(f"sha512:{HEX128}0", id="sha512-long"),
        pytest.param(f"sha256:{HEX64.upper()}", id="uppercase-hex"),
        pytest.param(f"SHA256:{HEX64}", id="uppercase-algorithm"),
        pytest.param(f"sha256:{'g' * 64}", id="non-hex"),
        pytest.param(f"md5:{HEX64[:32]}", id="md5"),
        pytest.param(f"sha384:{'a' * 96}", id="sha384"),
        pytest.param(f"sha256+b64u:{HEX64}", id="algorithm-with-encoding"),
        pytest.param(f" sha256:{HEX64}", id="leading-space"),
        pytest.param(f"sha256:{HEX64} ", id="trailing-space"),
        pytest.param(f"sha256:{HEX64}\n", id="trailing-newline"),
        pytest.param(f"sha256:{HEX64}:{HEX64}", id="two-parts"),
    ],
)
def test_parse_digest_invalid(value: str) -> None:
    with pytest.raises(ValueError, match="invalid digest"):
        parse_digest(value)
    assert not is_digest(value)


def test_algorithms_table() -> None:
    assert ALGORITHMS == {"sha256": 64, "sha512": 128}


@pytest.mark.parametrize(
    ("data", "algorithm", "expected"),
    [
        pytest.param(b"", "sha256", EMPTY_SHA256, id="empty-sha256"),
        pytest.param(DATA, "sha256", sha256(DATA), id="sha256"),
        pytest.param(DATA, "sha512", sha512(DATA), id="sha512"),
    ],
)
def test_compute_digest(data: bytes, algorithm: str, expected: str) -> None:
    digest = compute_digest(data, algorithm)
    assert digest == expected
    assert is_digest(digest)


def test_compute_digest_defaults_to_sha256() -> None:
    assert compute_digest(DATA) == sha256(DATA)


@pytest.mark.parametrize(
    ("chunks", "expected", "size"),
    [
        pytest.param(CHUNKS, sha256(DATA), len(DATA), id="sha256-with-size"),
        pytest.param(CHUNKS, sha256(DATA), None, id="sha256-no-size"),
        pytest.param(CHUNKS, sha512(DATA), len(DATA), id="sha512"),
        pytest.param([DATA], sha256(DATA), len(DATA), id="one-chunk"),
        pytest.param([], EMPTY_SHA256, 0, id="empty-stream"),
        pytest.param([b"a", b"", b"b"], sha256(b"ab"), 2, id="empty-chunk-inside"),
    ],
)
def test_a_good_stream_passes_whole(chunks: list[bytes], expected: str, size: int | None) -> None:
    source = Source(chunks)
    stream = UploadFeed(source, expected, size)
    received, error = consume(stream)
    assert error is None
    assert b"".join(received) == b"".join(chunks)
    assert source.exhausted
    assert stream.position == len(b"".join(chunks)) and stream.finished
    stream.verify()  # idempotent after the end


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param(CHUNKS, sha256(b"something else"), id="sha256"),
        pytest.param(CHUNKS, sha512(b"something else"), id="sha512"),
        pytest.param([DATA], sha256(b"x"), id="one-chunk"),
        pytest.param([b"a"] * 50, sha256(b"b" * 50), id="many-chunks"),
    ],
)
def test_digest_mismatch_raises_at_end_never_ending_cleanly(
    chunks: list[bytes], expected: str
) -> None:
    source = Source(chunks)
    received, error = consume(UploadFeed(source, expected, len(b"".join(chunks))))
    assert isinstance(error, DigestMismatchError)
    assert error.expected == expected
    hasher = {"sha256": sha256, "sha512": sha512}[expected.split(":", 1)[0]]
    assert error.actual == hasher(b"".join(chunks))
    # Verified only once the whole source was read ...
    assert source.exhausted
    # ... and what got through is a strict prefix: the consumer never holds the
    # complete body of a bad stream (the last chunk is held back until verified).
    body, whole = b"".join(received), b"".join(chunks)
    assert whole.startswith(body)
    assert len(body) < len(whole)
    assert received == chunks[:-1]


def test_good_stream_releases_last_chunk_only_after_verification() -> None:
    source = Source(CHUNKS)
    iterator = UploadFeed(source, sha256(DATA), len(DATA)).pieces()
    assert next(iterator) == CHUNKS[0]
    assert next(iterator) == CHUNKS[1]
    assert not source.exhausted
    assert next(iterator) == CHUNKS[2]
    assert source.exhausted
    with pytest.raises(StopIteration):
        next(iterator)


def test_too_short_raises_at_end() -> None:
    # What got through is shorter than the size an upload declares as its
    # Content-Length, so the registry cannot commit it either.
    data = b"12345"
    source = Source([data])
    received, error = consume(UploadFeed(source, sha256(data), 10))
    assert isinstance(error, DigestMismatchError)
    assert error.expected == "10 bytes"
    assert error.actual == "5 bytes"
    assert source.exhausted
    assert len(b"".join(received)) < 10


def test_too_long_raises_as_soon_as_exceeded() -> None:
    chunks = [b"ab", b"cd", b"ef", b"gh", b"ij"]
    source = Source(chunks)
    stream = UploadFeed(source, sha256(b"".join(chunks)), 4)
    received, error = consume(stream)
    assert isinstance(error, DigestMismatchError)
    assert "more than 4 bytes" in str(error)
    assert source.pulled == 3  # the chunk that crossed the limit, and not one more
    assert not source.exhausted
    assert b"".join(received) in (b"ab", b"abcd")
    assert stream.position <= 4


def test_too_long_with_correct_digest_of_prefix_still_fails() -> None:
    source = Source([b"abcd", b"extra"])
    _, error = consume(UploadFeed(source, sha256(b"abcd"), 4))
    assert isinstance(error, DigestMismatchError)


def test_size_mismatch_reported_before_digest_mismatch() -> None:
    _, error = consume(UploadFeed([b"abc"], sha256(b"zzzz"), 4))
    assert isinstance(error, DigestMismatchError)
    assert error.actual == "3 bytes"


@pytest.mark.parametrize(
    "expected",
    [pytest.param("sha256:abc", id="short"), pytest.param("md5:" + "a" * 32, id="md5")],
)
def test_invalid_expected_digest_rejected_up_front(expected: str) -> None:
    with pytest.raises(ValueError, match="invalid digest"):
        UploadFeed([b"x"], expected, None)


def test_verify_without_iterating() -> None:
    stream = UploadFeed([], EMPTY_SHA256, 0)
    stream.verify()
    with pytest.raises(DigestMismatchError):
        UploadFeed([], sha256(b"x"), None).verify()


def test_digest_mismatch_error_message() -> None:
    error = DigestMismatchError("sha256:aa", "sha256:bb", what="blob")
    assert str(error) == "blob digest mismatch: expected sha256:aa, got sha256:bb"
