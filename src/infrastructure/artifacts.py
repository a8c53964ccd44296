"""Artifacts on the local filesystem: written to a temp file, fsynced, then published by an atomic rename."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import BinaryIO

from application.errors import ArtifactMissing
from application.ports import ArtifactSink, ArtifactStore

FLUSH_BYTES = 1 << 20
READ_CHUNK_BYTES = 256 << 10
_TMP_DIR = ".tmp"
_TMP_SUFFIX = ".part"
_BAD_SEGMENTS = frozenset({"", ".", ".."})


class _FileSink(ArtifactSink):
    """Buffers writes in memory and hands them to a thread in large blocks, hashing them there too."""

    def __init__(self, file: BinaryIO, flush_bytes: int) -> None:
        self._file = file
        self._flush_bytes = flush_bytes
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._size = 0

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self._size += len(chunk)
        if len(self._buffer) >= self._flush_bytes:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            block, self._buffer = self._buffer, bytearray()
            write = asyncio.ensure_future(asyncio.to_thread(self._write_block, block))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # The thread writes on regardless: let it finish before the file is closed and discarded.
                _ = await asyncio.gather(write, return_exceptions=True)
                raise

    def _write_block(self, block: bytearray) -> None:
        self._hash.update(block)  # hashlib releases the GIL for large blocks
        self._file.write(block)

    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        digest = self._hash.copy()
        digest.update(self._buffer)
        return digest.hexdigest()


class FileSystemArtifactStore(ArtifactStore):
    """Artifacts under `root/<key>`; partial files live in `root/.tmp/` until they are published.

    Keys are relative POSIX paths (`<job id>/attempt-1.csv`); absolute keys, `..`, `.` or empty segments,
    backslashes and NUL raise ValueError, so no key can address a file outside `root`.
    """

    def __init__(self, root: Path, *, flush_bytes: int = FLUSH_BYTES, read_chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self._root = root
        self._flush_bytes = flush_bytes
        self._read_chunk_bytes = read_chunk_bytes

    def create(self, key: str) -> AbstractAsyncContextManager[ArtifactSink]:
        return self._create(self._path(key))

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ArtifactMissing(key) from None
        try:
            while chunk := await asyncio.to_thread(file.read, self._read_chunk_bytes):
                yield chunk
        finally:
            file.close()

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, self._path(key))

    async def sweep_temporary(self, older_than_seconds: float) -> int:
        """Delete the partial files in `root/.tmp/` last written more than `older_than_seconds` ago.

        A writer flushes every `flush_bytes`, so keep the age well above the longest pause between two flushes
        (the report timeout, at least): a file swept while still being written fails that attempt's publish.
        Published artifacts never live in `.tmp/` (no key can address it), so they are never touched.
        """
        return await asyncio.to_thread(self._sweep_temporary, time.time() - older_than_seconds)

    def _path(self, key: str) -> Path:
        parts = key.split("/")  # an absolute key starts with an empty segment
        if "\\" in key or "\0" in key or parts[0] == _TMP_DIR or any(part in _BAD_SEGMENTS for part in parts):
            raise ValueError(f"invalid artifact key: {key!r}")
        return self._root.joinpath(*parts)

    @asynccontextmanager
    async def _create(self, path: Path) -> AsyncIterator[ArtifactSink]:
        file, temp = await asyncio.to_thread(self._open_temp)
        published = False
        try:
            sink = _FileSink(file, self._flush_bytes)
            yield sink
            await sink.flush()
            await asyncio.to_thread(self._publish, file, temp, path)
            published = True
        finally:
            if not published:
                await asyncio.to_thread(_discard, file, temp)

    def _open_temp(self) -> tuple[BinaryIO, Path]:
        temp_dir = self._root / _TMP_DIR
        temp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=temp_dir, suffix=_TMP_SUFFIX)
        return os.fdopen(fd, "wb"), Path(name)

    def _publish(self, file: BinaryIO, temp: Path, path: Path) -> None:
        file.flush()
        os.fsync(file.fileno())
        file.close()
        for _ in range(3):  # a concurrent delete may remove the emptied parent between mkdir and rename
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                temp.replace(path)
                break
            except FileNotFoundError:
                continue
        else:
            raise FileNotFoundError(f"could not publish {path}")
        _fsync_dir(path.parent)

    def _sweep_temporary(self, cutoff: float) -> int:
        removed = 0
        try:
            entries = list(os.scandir(self._root / _TMP_DIR))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.name.endswith(_TMP_SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # published, discarded or swept by another process meanwhile
                continue
        return removed

    def _delete(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self._root and self._root in parent.parents:
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone): stop climbing
                return
            parent = parent.parent


def _discard(file: BinaryIO, temp: Path) -> None:
    file.close()
    temp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
