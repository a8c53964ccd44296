"""Artifacts on the local filesystem: written to a temp file, fsynced, then published by an atomic rename."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from application.errors import ArtifactMissing
from application.ports import ArtifactLabel, ArtifactSink, ArtifactStore

FLUSH_BYTES = 1 << 20
READ_CHUNK_BYTES = 256 << 10
_TMP_DIR = ".tmp"
_TMP_SUFFIX = ".part"
_BAD_SEGMENTS = frozenset({"", ".", ".."})


class BufferedSink(ArtifactSink):
    """A sink that gathers writes into blocks of at least `block_bytes` and hands each on (`_hand_on`), hashing every
    byte on the way: `size` and `sha256` are those of everything written, handed on yet or still buffered."""

    def __init__(self, block_bytes: int) -> None:
        self._block_bytes = block_bytes
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._size = 0

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self._size += len(chunk)
        if len(self._buffer) >= self._block_bytes:
            await self._hand_on(self._take())

    @abstractmethod
    async def _hand_on(self, block: bytearray) -> None:
        """Hash `block` into `_hash` and pass it on to where the artifact is written."""

    def _take(self) -> bytearray:
        """What is buffered, which the caller now hands on."""
        block, self._buffer = self._buffer, bytearray()
        return block

    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        digest = self._hash.copy()
        digest.update(self._buffer)
        return digest.hexdigest()


class _FileSink(BufferedSink):
    """Buffers writes in memory and hands them to a thread in large blocks, hashing them there too.

    The temporary file is opened by the first block's thread: an artifact that fits in the buffer (most do) is
    opened, written, synced and published in one thread call (`finish`), not three.
    """

    def __init__(self, open_temp: Callable[[], tuple[BinaryIO, Path]], flush_bytes: int) -> None:
        super().__init__(flush_bytes)
        self._open_temp = open_temp
        self._file: BinaryIO | None = None
        self._temp: Path | None = None
        self.published: Path | None = None

    async def _hand_on(self, block: bytearray) -> None:
        await _to_thread_to_the_end(self._write_block, block)

    def _write_block(self, block: bytearray) -> BinaryIO:
        if self._file is None:
            self._file, self._temp = self._open_temp()
        self._hash.update(block)  # hashlib releases the GIL for large blocks
        self._file.write(block)
        return self._file

    def finish(self, publish: Callable[[BinaryIO, Path, Path], None], path: Path) -> None:
        """In a thread: write what is buffered, then publish the file at `path`."""
        file = self._write_block(self._take())
        assert self._temp is not None  # noqa: S101 - set with the file
        publish(file, self._temp, path)
        self.published = path

    def discard(self) -> None:
        """In a thread: close and delete the temporary file, if there is one."""
        if self._file is not None:
            self._file.close()
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)


async def _to_thread_to_the_end(function: Callable[..., object], *args: object) -> None:
    """`asyncio.to_thread`, but a cancelled caller still waits for the thread: it works on regardless, and the
    file it uses must be idle before it is closed and discarded."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        _ = await asyncio.gather(work, return_exceptions=True)
        raise


class FileSystemArtifactStore(ArtifactStore):
    """Artifacts under `root/<key>`; partial files live in `root/.tmp/` until they are published.

    Keys are relative POSIX paths (`<job id>/attempt-1.csv`); absolute keys, `..`, `.` or empty segments,
    backslashes and NUL raise ValueError, so no key can address a file outside `root`.
    """

    def __init__(self, root: Path, *, flush_bytes: int = FLUSH_BYTES, read_chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self._root = root
        self._flush_bytes = flush_bytes
        self._read_chunk_bytes = read_chunk_bytes

    def create(self, key: str, label: ArtifactLabel | None = None) -> AbstractAsyncContextManager[ArtifactSink]:
        return self._create(self._path(key))

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            file = await asyncio.to_thread(_open_at, path, offset)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ArtifactMissing(key) from None
        left = length
        try:
            while left is None or left > 0:
                size = self._read_chunk_bytes if left is None else min(left, self._read_chunk_bytes)
                chunk = await asyncio.to_thread(file.read, size)
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
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

    async def link(self, key: str, expires_in: timedelta) -> str | None:
        return None  # a local directory has no URL of its own: downloads go through the API

    def _path(self, key: str) -> Path:
        parts = key.split("/")  # an absolute key starts with an empty segment
        if "\\" in key or "\0" in key or parts[0] == _TMP_DIR or any(part in _BAD_SEGMENTS for part in parts):
            raise ValueError(f"invalid artifact key: {key!r}")
        return self._root.joinpath(*parts)

    @asynccontextmanager
    async def _create(self, path: Path) -> AsyncIterator[ArtifactSink]:
        sink = _FileSink(self._open_temp, self._flush_bytes)
        finished = False
        try:
            yield sink
            await _to_thread_to_the_end(sink.finish, self._publish, path)
            finished = True
        finally:
            if not finished:
                # Cancelled while `finish` ran: it may have published a file that its caller will never record.
                await asyncio.to_thread(self._discard_sink, sink)

    def _discard_sink(self, sink: _FileSink) -> None:
        sink.discard()
        if sink.published is not None:
            self._delete(sink.published)

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


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_at(path: Path, offset: int) -> BinaryIO:
    file = path.open("rb")
    if offset:
        file.seek(offset)
    return file
