"""A content-addressed blob store on the local filesystem.

Blobs live at ``<root>/<sha256[:2]>/<sha256>``. Writes go to a temporary file in ``root`` (so on the same
filesystem as every destination), are hashed and counted on the way, fsynced, then renamed into place
atomically: a reader never sees a partial blob. Identical content is stored once.

Hashes are validated as exactly 64 lowercase hex characters before any path is built, so no caller-supplied
value can reach outside ``root``. No Flask, no database: callers decide which blobs are still referenced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("esl_controller.storage")

CHUNK_SIZE = 64 * 1024
TEMP_PREFIX = ".upload-"
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


class TooLarge(Exception):
    """The content is larger than the limit given to the writer."""

    def __init__(self, limit: int):
        super().__init__(f"content larger than {limit} bytes")
        self.limit = limit


class BadHash(ValueError):
    """A value that is not a 64-character lowercase hex SHA-256 digest."""


def check_hash(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex characters; raise :class:`BadHash` otherwise."""
    if not isinstance(sha256, str) or not _HASH_RE.match(sha256):
        raise BadHash("not a SHA-256 hex digest")
    return sha256


def files_root(data_dir: str | os.PathLike[str]) -> Path:
    """Where the API keeps uploaded files: ``<data_dir>/files``."""
    return Path(data_dir) / "files"


class BlobWriter:
    """One blob being written: ``write()`` chunks, then ``commit()`` (or ``abort()``).

    Usable as a context manager: leaving the block without a commit removes the temporary file.
    """

    def __init__(self, store: BlobStore, max_bytes: int | None = None):
        self._store = store
        self._max = max_bytes
        self._hash = hashlib.sha256()
        self._size = 0
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=store.root)
        self._tmp = Path(name)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        """Append ``data``; raises :class:`TooLarge` (and aborts) once the total passes ``max_bytes``."""
        if self._done or self._fh is None:
            raise ValueError("blob writer already finished")
        if not data:
            return
        if self._max is not None and self._size + len(data) > self._max:
            self.abort()
            raise TooLarge(self._max)
        self._fh.write(data)
        self._hash.update(data)
        self._size += len(data)

    def commit(self) -> tuple[str, int]:
        """Flush, fsync and rename into place; return ``(sha256, size)``."""
        if self._done or self._fh is None:
            raise ValueError("blob writer already finished")
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            sha = self._hash.hexdigest()
            dest = self._store.path(sha)
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Replacing an existing blob with identical bytes is harmless and keeps the rename atomic.
            os.replace(self._tmp, dest)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return sha, self._size

    def abort(self) -> None:
        """Drop the temporary file (idempotent)."""
        self._done = True
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                log.warning("closing temporary blob %s failed", self._tmp.name)
            self._fh = None
        try:
            self._tmp.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.abort()


class BlobStore:
    """Content-addressed files under ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash lives (whether or not it exists)."""
        check_hash(sha256)
        return self.root / sha256[:2] / sha256

    def key(self, sha256: str) -> str:
        """The blob's location relative to ``root``, safe to show to clients."""
        check_hash(sha256)
        return f"{sha256[:2]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def writer(self, max_bytes: int | None = None) -> BlobWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        return BlobWriter(self, max_bytes)

    def put_stream(
        self, fileobj: BinaryIO, max_bytes: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> tuple[str, int]:
        """Copy ``fileobj`` to the store with a counted read; return ``(sha256, size)``.

        Raises :class:`TooLarge` as soon as more than ``max_bytes`` have been read (nothing is stored).
        """
        with self.writer(max_bytes) as w:
            while True:
                # read at most one byte past the limit: enough to know it was exceeded
                want = chunk_size
                if max_bytes is not None:
                    want = max(1, min(chunk_size, max_bytes - w.size + 1))
                chunk = fileobj.read(want)
                if not chunk:
                    break
                w.write(chunk)
            return w.commit()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        with self.writer() as w:
            w.write(data)
            return w.commit()

    def open(self, sha256: str) -> BinaryIO:
        """Open a blob for reading; raises FileNotFoundError when it is absent."""
        return open(self.path(sha256), "rb")  # noqa: SIM115 - the caller owns the file object

    def delete(self, sha256: str) -> bool:
        """Remove a blob; True if it existed. The caller checks that nothing references it any more."""
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # The fan-out directory stays (at most 256 of them): removing it could race a concurrent commit.
        return True

    def sweep_temp(self, max_age_seconds: float = 3600.0) -> int:
        """Remove temporary files left by interrupted writes older than ``max_age_seconds``."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - max_age_seconds
        removed = 0
        for entry in self.root.glob(f"{TEMP_PREFIX}*"):
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
