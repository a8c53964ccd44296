from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pytest

from application.errors import ArtifactMissing
from infrastructure.artifacts import FileSystemArtifactStore

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> FileSystemArtifactStore:
    return FileSystemArtifactStore(tmp_path / "artifacts", flush_bytes=64 * 1024, read_chunk_bytes=100_000)


async def read_all(store: FileSystemArtifactStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(key)])


def temp_files(tmp_path: Path) -> list[Path]:
    temp_dir = tmp_path / "artifacts" / ".tmp"
    return list(temp_dir.iterdir()) if temp_dir.exists() else []


async def test_round_trip_reports_size_and_sha256(store: FileSystemArtifactStore, tmp_path: Path) -> None:
    chunks = [os.urandom(size) for size in (1, 70_000, 0, 300_000, 5)]
    payload = b"".join(chunks)

    async with store.create("job-1/attempt-1.csv") as sink:
        for chunk in chunks:
            await sink.write(chunk)

    assert (sink.size, sink.sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert await read_all(store, "job-1/attempt-1.csv") == payload
    assert await store.exists("job-1/attempt-1.csv")
    assert (tmp_path / "artifacts" / "job-1" / "attempt-1.csv").read_bytes() == payload
    assert temp_files(tmp_path) == []


async def test_reads_come_in_bounded_chunks(store: FileSystemArtifactStore) -> None:
    async with store.create("big.bin") as sink:
        await sink.write(b"x" * 250_000)

    sizes = [len(chunk) async for chunk in store.read("big.bin")]

    assert sizes == [100_000, 100_000, 50_000]


async def test_a_part_is_read_from_its_offset_in_bounded_chunks(store: FileSystemArtifactStore) -> None:
    data = bytes(range(256)) * 1000
    async with store.create("big.bin") as sink:
        await sink.write(data)

    middle = [chunk async for chunk in store.read("big.bin", 1_000, 150_001)]
    tail = b"".join([chunk async for chunk in store.read("big.bin", 255_990)])
    past_the_end = b"".join([chunk async for chunk in store.read("big.bin", 255_990, 100)])

    assert [len(chunk) for chunk in middle] == [100_000, 50_001]
    assert b"".join(middle) == data[1_000:151_001]
    assert tail == past_the_end == data[255_990:]


async def test_an_empty_artifact_is_published(store: FileSystemArtifactStore) -> None:
    async with store.create("empty.csv") as sink:
        pass

    assert sink.size == 0
    assert await store.exists("empty.csv")
    assert await read_all(store, "empty.csv") == b""


async def test_nothing_is_published_when_the_block_raises(store: FileSystemArtifactStore, tmp_path: Path) -> None:
    async def write_then_fail() -> None:
        async with store.create("job-2/attempt-1.csv") as sink:
            await sink.write(b"a" * 200_000)  # some of it already flushed to the temp file
            raise RuntimeError("query failed")

    with pytest.raises(RuntimeError, match="query failed"):
        await write_then_fail()

    assert not await store.exists("job-2/attempt-1.csv")
    assert temp_files(tmp_path) == []
    with pytest.raises(ArtifactMissing):
        await read_all(store, "job-2/attempt-1.csv")


async def test_a_cancelled_writer_publishes_nothing(store: FileSystemArtifactStore, tmp_path: Path) -> None:
    started = asyncio.Event()

    async def writer() -> None:
        async with store.create("job-3/attempt-1.csv") as sink:
            await sink.write(b"partial")
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(writer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert not await store.exists("job-3/attempt-1.csv")
    assert temp_files(tmp_path) == []


async def write_and_cancel_once(
    store: FileSystemArtifactStore, key: str, content: bytes, in_thread: threading.Event
) -> None:
    """Write `content` to `key` and cancel the writer as soon as the store's thread sets `in_thread`."""

    async def writer() -> None:
        async with store.create(key) as sink:
            await sink.write(content)

    task = asyncio.create_task(writer())
    await asyncio.to_thread(in_thread.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_writer_cancelled_mid_block_lets_the_block_finish_before_the_file_is_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileSystemArtifactStore(tmp_path, flush_bytes=4)
    events: list[str] = []
    writing = threading.Event()

    class SlowFile(io.BytesIO):
        def write(self, block: ReadableBuffer) -> int:
            events.append("write started")
            writing.set()
            time.sleep(0.2)
            events.append("write done")
            return super().write(block)

        def close(self) -> None:
            events.append("closed")
            super().close()

    monkeypatch.setattr(store, "_open_temp", lambda: (SlowFile(), tmp_path / "never.part"))

    await write_and_cancel_once(store, "job-4/attempt-1.csv", b"a full block", writing)

    assert events == ["write started", "write done", "closed"]


async def test_a_small_artifact_creates_no_temporary_file_before_it_is_finished(
    store: FileSystemArtifactStore, tmp_path: Path
) -> None:
    async with store.create("job-7/attempt-1.csv") as sink:
        await sink.write(b"small")
        assert temp_files(tmp_path) == []

    assert await read_all(store, "job-7/attempt-1.csv") == b"small"
    assert temp_files(tmp_path) == []


async def test_a_writer_cancelled_while_finishing_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileSystemArtifactStore(tmp_path / "artifacts")
    publishing = threading.Event()
    publish = store._publish  # slowed down, to cancel the writer while the thread publishes

    def slow_publish(file: BinaryIO, temp: Path, path: Path) -> None:
        publishing.set()
        time.sleep(0.2)
        publish(file, temp, path)

    monkeypatch.setattr(store, "_publish", slow_publish)

    await write_and_cancel_once(store, "job-8/attempt-1.csv", b"done, but nobody will know", publishing)

    assert not await store.exists("job-8/attempt-1.csv")
    assert temp_files(tmp_path) == []


async def test_concurrent_writers_of_different_keys_do_not_mix(store: FileSystemArtifactStore) -> None:
    async def write(index: int) -> None:
        async with store.create(f"job-{index}/attempt-1.json") as sink:
            for _ in range(20):
                await sink.write(bytes([index]) * 10_000)
                await asyncio.sleep(0)

    await asyncio.gather(*(write(index) for index in range(8)))

    for index in range(8):
        assert await read_all(store, f"job-{index}/attempt-1.json") == bytes([index]) * 200_000


async def test_reading_a_missing_key_raises_artifact_missing(store: FileSystemArtifactStore) -> None:
    with pytest.raises(ArtifactMissing):
        await read_all(store, "nope/attempt-1.csv")
    assert not await store.exists("nope/attempt-1.csv")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside.csv",
        "job/../../outside.csv",
        "job/..",
        "..",
        "job\\..\\outside.csv",
        "job//attempt.csv",
        "./job.csv",
        ".tmp/x.part",
        "job/attempt.csv/",
        "nul\0byte",
    ],
)
async def test_keys_that_could_leave_the_root_are_rejected(
    store: FileSystemArtifactStore, tmp_path: Path, key: str
) -> None:
    with pytest.raises(ValueError, match="invalid artifact key"):
        store.create(key)
    with pytest.raises(ValueError, match="invalid artifact key"):
        await read_all(store, key)
    with pytest.raises(ValueError, match="invalid artifact key"):
        await store.exists(key)
    with pytest.raises(ValueError, match="invalid artifact key"):
        await store.delete(key)
    assert not (tmp_path / "outside.csv").exists()


async def test_delete_is_idempotent_and_removes_the_emptied_directory(
    store: FileSystemArtifactStore, tmp_path: Path
) -> None:
    for attempt in (1, 2):
        async with store.create(f"job-9/attempt-{attempt}.csv") as sink:
            await sink.write(b"data")

    await store.delete("job-9/attempt-1.csv")
    assert (tmp_path / "artifacts" / "job-9").is_dir()  # attempt 2 is still there
    await store.delete("job-9/attempt-2.csv")
    await store.delete("job-9/attempt-2.csv")
    await store.delete("never-existed/attempt-1.csv")

    assert not await store.exists("job-9/attempt-2.csv")
    assert not (tmp_path / "artifacts" / "job-9").exists()
    assert (tmp_path / "artifacts").is_dir()


def age(path: Path, seconds: float) -> None:
    """Set a file's mtime `seconds` into the past."""
    past = time.time() - seconds
    os.utime(path, (past, past))


async def test_sweep_temporary_removes_only_old_temporary_files(store: FileSystemArtifactStore, tmp_path: Path) -> None:
    async with store.create("job-5/attempt-1.csv") as sink:
        await sink.write(b"published")
    age(tmp_path / "artifacts" / "job-5" / "attempt-1.csv", 7200)  # old, but published: never swept
    temp_dir = tmp_path / "artifacts" / ".tmp"
    crashed, fresh, foreign = temp_dir / "crashed.part", temp_dir / "fresh.part", temp_dir / "notes.txt"
    for path in (crashed, fresh, foreign):
        path.write_bytes(b"partial")
    nested = temp_dir / "nested.part"
    nested.mkdir()
    age(crashed, 7200)
    age(foreign, 7200)
    age(nested, 7200)

    being_written = b"x" * (64 * 1024)  # a full block: its temporary file exists from the first flush on
    async with store.create("job-6/attempt-1.csv") as sink:
        await sink.write(being_written)
        [in_progress] = set(temp_files(tmp_path)) - {crashed, fresh, foreign, nested}
        assert await store.sweep_temporary(3600) == 1  # a write in progress is fresh: it is left alone
        assert await store.sweep_temporary(3600) == 0
        assert in_progress.exists()

    assert sorted(path.name for path in temp_files(tmp_path)) == ["fresh.part", "nested.part", "notes.txt"]
    assert await read_all(store, "job-5/attempt-1.csv") == b"published"
    assert await read_all(store, "job-6/attempt-1.csv") == being_written


async def test_sweep_temporary_with_no_temporary_directory_removes_nothing(store: FileSystemArtifactStore) -> None:
    assert await store.sweep_temporary(0) == 0
