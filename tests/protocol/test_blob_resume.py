"""The source stage resumes a cut blob body with `Range: bytes=N-` (mock registry).

The registry-level proof (real cuts through the fault proxy, byte counts,
memory) is tests/reliability/test_resume.py; here each answer a registry may
give to the resume request is scripted exactly: a 206 spliced in, a 200
(a CDN ignoring `Range`) skipped up to N, a 206 at the wrong offset refused.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from syncer_core.errors import RegistryError
from syncer_core.registry import ClientOptions
from tests.support.mock_registry import Call, MockRegistry

DATA = bytes(range(100)) * 3  # 300 bytes
DIGEST = "sha256:" + "2" * 64
PATH = f"/v2/library/app/blobs/{DIGEST}"
CHUNK = 50


def cut_after(data: bytes, count: int) -> Iterator[bytes]:
    """A body that delivers `count` bytes in CHUNK pieces, then the connection resets."""
    for start in range(0, count, CHUNK):
        yield data[start : min(count, start + CHUNK)]
    raise httpx.ReadError("connection reset by peer")


def expect_range(offset: int):
    def check(call: Call) -> None:
        assert call.header("range") == f"bytes={offset}-"

    return check


def expect_partial(mock: MockRegistry, start: int, content: bytes | Iterator[bytes]) -> None:
    """A 206 answer to `Range: bytes=<start>-`, its body `content`."""
    mock.expect(
        "GET",
        PATH,
        status=206,
        content=content,
        headers={"Content-Range": f"bytes {start}-299/300"},
        check=expect_range(start),
    )


def read_all(mock: MockRegistry) -> tuple[bytes, int]:
    client = mock.client(options=ClientOptions(chunk_size=CHUNK))
    with client.open_blob("library/app", DIGEST) as blob:
        data = b"".join(blob.iter_chunks())
        return data, blob.resumes


def test_a_cut_body_continues_from_a_206_at_the_cut() -> None:
    mock = MockRegistry()
    mock.expect("GET", PATH, content=cut_after(DATA, 100), headers={"Content-Length": "300"})
    expect_partial(mock, 100, cut_after(DATA[100:], 150))
    expect_partial(mock, 250, DATA[250:])
    data, resumes = read_all(mock)
    assert data == DATA
    assert resumes == 2
    mock.assert_done()


def test_a_200_to_the_range_request_is_skipped_up_to_the_cut() -> None:
    """A CDN that ignores `Range` sends the whole blob again: its first N bytes are dropped."""
    mock = MockRegistry()
    mock.expect("GET", PATH, content=cut_after(DATA, 150), headers={"Content-Length": "300"})
    mock.expect("GET", PATH, content=DATA, check=expect_range(150))
    data, resumes = read_all(mock)
    assert data == DATA
    assert resumes == 1
    mock.assert_done()


def test_a_206_at_another_offset_is_refused_with_a_clear_error() -> None:
    mock = MockRegistry()
    mock.expect("GET", PATH, content=cut_after(DATA, 100), headers={"Content-Length": "300"})
    mock.expect(
        "GET",
        PATH,
        status=206,
        content=DATA,
        headers={"Content-Range": "bytes 0-299/300"},
        check=expect_range(100),
    )
    with pytest.raises(RegistryError, match=r"asked for bytes 100- to resume, got 206") as info:
        read_all(mock)
    assert "cannot resume" in str(info.value)


def test_a_clean_end_short_of_the_size_is_resumed_too() -> None:
    """An EOF-delimited body that stops early (no Content-Length framing) is a cut as well."""
    mock = MockRegistry()

    def short() -> Iterator[bytes]:
        yield DATA[:120]

    # Content-Length must frame the first answer for the size to be known; the mock
    # serves exactly what it is given, so the short body ends cleanly at 120 bytes.
    mock.expect(
        "GET",
        PATH,
        respond=lambda call: httpx.Response(
            200, headers={"Content-Length": "300"}, stream=_Short(short())
        ),
    )
    expect_partial(mock, 120, DATA[120:])
    data, resumes = read_all(mock)
    assert data == DATA
    assert resumes == 1


class _Short(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks


def test_resumes_are_bounded_when_no_byte_arrives() -> None:
    mock = MockRegistry()
    mock.expect("GET", PATH, content=cut_after(DATA, 50), headers={"Content-Length": "300"})
    for _ in range(3):
        expect_partial(mock, 50, cut_after(DATA[50:], 0))
    with pytest.raises(RegistryError, match="connection reset"):
        read_all(mock)
    mock.assert_done()


def rewound_read(mock: MockRegistry, after: int, back_to: int) -> bytes:
    """Read `after` bytes, rewind to `back_to`, then read to the end."""
    client = mock.client(options=ClientOptions(chunk_size=CHUNK))
    with client.open_blob("library/app", DIGEST) as blob:
        chunks = blob.iter_chunks()
        head = b""
        while len(head) < after:
            head += next(chunks)
        blob.rewind(back_to)
        return head + b"".join(chunks)


def test_a_rewind_rereads_the_span_on_a_side_request_and_the_body_continues() -> None:
    """The destination confirmed fewer bytes than were read: only that span is asked again."""
    mock = MockRegistry()
    mock.expect("GET", PATH, content=DATA, headers={"Content-Length": "300"})
    mock.expect(
        "GET",
        PATH,
        status=206,
        content=DATA[100:200],
        headers={"Content-Range": "bytes 100-199/300"},
        check=lambda call: _assert_header(call, "range", "bytes=100-199"),
    )
    assert rewound_read(mock, 200, 100) == DATA[:200] + DATA[100:]
    mock.assert_done()  # the first body went on: no third request


def test_without_a_side_request_the_rewind_reopens_the_main_body() -> None:
    """A full connection pool (or any failure of the side request) is no dead end."""
    mock = MockRegistry()
    mock.expect("GET", PATH, content=DATA, headers={"Content-Length": "300"})
    mock.expect("GET", PATH, raises=httpx.PoolTimeout("no connection available"))
    expect_partial(mock, 100, DATA[100:])
    assert rewound_read(mock, 200, 100) == DATA[:200] + DATA[100:]
    mock.assert_done()


def _assert_header(call: Call, name: str, expected: str) -> None:
    assert call.header(name) == expected
