"""The content-addressed blob store: hashing, counted reads, atomic placement, hash validation."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from esl_controller.storage import BadHash, BlobStore, TooLarge, check_hash, files_root

PAYLOAD = b"The quick brown fox jumps over the lazy dog.\n" * 3000  # ~135 kB, several chunks


class CountingReader(io.RawIOBase):
    """A file object that records how many bytes were read from it."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunk = self._buf.read(n)
        self.bytes_read += len(chunk)
        return chunk


def temp_files(store: BlobStore) -> list[str]:
    return [p.name for p in store.root.glob(".upload-*")]


def test_put_stream_stores_by_hash_and_round_trips(tmp_path):
    store = BlobStore(tmp_path / "files")
    sha, size = store.put_stream(io.BytesIO(PAYLOAD), max_bytes=len(PAYLOAD))
    assert sha == hashlib.sha256(PAYLOAD).hexdigest()
    assert size == len(PAYLOAD)
    assert store.path(sha) == (tmp_path / "files").resolve() / sha[:2] / sha
    assert store.key(sha) == f"{sha[:2]}/{sha}"
    with store.open(sha) as fh:
        assert fh.read() == PAYLOAD
    assert temp_files(store) == []


def test_identical_content_is_stored_once(tmp_path):
    store = BlobStore(tmp_path)
    a = store.put_bytes(b"same bytes")
    b = store.put_stream(io.BytesIO(b"same bytes"))
    assert a == b
    assert len(list((tmp_path / a[0][:2]).iterdir())) == 1


def test_too_large_stops_reading_and_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)
    reader = CountingReader(PAYLOAD)
    with pytest.raises(TooLarge) as info:
        store.put_stream(reader, max_bytes=1000, chunk_size=256)
    assert info.value.limit == 1000
    # a counted read: at most one byte past the limit was consumed, not the whole stream
    assert reader.bytes_read <= 1001
    assert temp_files(store) == []
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []


def test_exactly_the_limit_is_accepted(tmp_path):
    store = BlobStore(tmp_path)
    sha, size = store.put_stream(io.BytesIO(b"x" * 1000), max_bytes=1000, chunk_size=300)
    assert size == 1000
    assert store.exists(sha)


def test_empty_content(tmp_path):
    store = BlobStore(tmp_path)
    sha, size = store.put_bytes(b"")
    assert (sha, size) == (hashlib.sha256(b"").hexdigest(), 0)
    assert store.path(sha).read_bytes() == b""


def test_writer_abort_on_exception_removes_temp(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.write(b"partial")
            assert len(temp_files(store)) == 1
            raise RuntimeError("client went away")
    assert temp_files(store) == []


def test_writer_cannot_be_reused(tmp_path):
    store = BlobStore(tmp_path)
    w = store.writer()
    w.write(b"abc")
    w.commit()
    with pytest.raises(ValueError):
        w.write(b"more")
    with pytest.raises(ValueError):
        w.commit()


def test_delete(tmp_path):
    store = BlobStore(tmp_path)
    sha, _ = store.put_bytes(b"to be removed")
    assert store.delete(sha) is True
    assert not store.exists(sha)
    assert store.delete(sha) is False
    with pytest.raises(FileNotFoundError):
        store.open(sha)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../" * 20 + "etc/passwd",
        "a" * 63,
        "a" * 65,
        "A" * 64,  # uppercase is not the canonical form
        "g" * 64,
        "../" + "a" * 61,
        "a" * 62 + "/.",
        "a" * 63 + "\x00",
        None,
    ],
)
def test_bad_hashes_never_touch_the_filesystem(tmp_path, bad):
    store = BlobStore(tmp_path / "files")
    for op in (store.path, store.open, store.delete, store.exists, store.key, check_hash):
        with pytest.raises(BadHash):
            op(bad)
    assert not (tmp_path / "files").exists()


def test_sweep_temp_removes_only_old_leftovers(tmp_path):
    store = BlobStore(tmp_path)
    sha, _ = store.put_bytes(b"kept")
    old = tmp_path / ".upload-old.part"
    old.write_bytes(b"left over by a crash")
    os.utime(old, (1, 1))
    fresh = tmp_path / ".upload-fresh.part"
    fresh.write_bytes(b"an upload in progress")
    assert store.sweep_temp(max_age_seconds=60) == 1
    assert not old.exists()
    assert fresh.exists()
    assert store.exists(sha)


def test_files_root():
    assert str(files_root("/srv/data")) == "/srv/data/files"
