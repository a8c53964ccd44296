"""Small artifacts in PostgreSQL, larger ones in the store behind (here the local directory)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import ArtifactMissing, StorageUnavailable
from bootstrap.container import artifact_store
from infrastructure.artifacts import FileSystemArtifactStore
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.inline_artifacts import InlineArtifactStore
from infrastructure.persistence.statements import INSERT_INLINE_ARTIFACT
from infrastructure.persistence.tables import inline_artifacts
from settings import Settings

pytestmark = pytest.mark.integration

MAX_BYTES = 1000
KEY = "job-1/attempt-1.csv"


@pytest.fixture
def directory(tmp_path: Path) -> FileSystemArtifactStore:
    return FileSystemArtifactStore(tmp_path / "artifacts", flush_bytes=4096, read_chunk_bytes=3000)


@pytest.fixture
def store(pg_engine: AsyncEngine, directory: FileSystemArtifactStore) -> InlineArtifactStore:
    return InlineArtifactStore(pg_engine, directory, max_bytes=MAX_BYTES)


async def write(store: InlineArtifactStore, key: str, *chunks: bytes) -> tuple[int, str, bytes | None]:
    """Write an artifact as a worker does; what the store left to be saved with the job is saved, as the job ledger
    saves it with the job's outcome. The sink's size, hash and content."""
    async with store.create(key) as sink:
        for chunk in chunks:
            await sink.write(chunk)
    if sink.content is not None:
        await keep(store._engine, key, sink.content)
    return sink.size, sink.sha256, sink.content


async def keep(engine: AsyncEngine, key: str, content: bytes) -> None:
    values = {"set_artifact_key": key, "artifact_content": content, "set_finished_at": datetime.now(UTC)}
    async with engine.begin() as conn:
        await conn.execute(INSERT_INLINE_ARTIFACT, values)


async def read_all(store: InlineArtifactStore, key: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, offset, length)])


async def rows(engine: AsyncEngine) -> dict[str, bytes]:
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(inline_artifacts.c.key, inline_artifacts.c.content))
        return {row[0]: row[1] for row in result}


def files(tmp_path: Path) -> list[str]:
    root = tmp_path / "artifacts"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_an_artifact_of_at_most_max_bytes_is_left_to_the_ledger_and_stored_nowhere_by_the_store(
    store: InlineArtifactStore, pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    chunks = [b"id,name\r\n", os.urandom(MAX_BYTES - 20), b"", b"x" * 11]
    payload = b"".join(chunks)

    async with store.create(KEY) as sink:
        for chunk in chunks:
            await sink.write(chunk)

    assert (sink.size, sink.sha256, sink.content) == (MAX_BYTES, hashlib.sha256(payload).hexdigest(), payload)
    assert await rows(pg_engine) == {}
    assert files(tmp_path) == []
    assert not await store.exists(KEY)


async def test_a_small_artifact_saved_with_its_job_reads_back_whole(
    store: InlineArtifactStore, pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    payload = os.urandom(MAX_BYTES)

    await write(store, KEY, payload)

    assert await rows(pg_engine) == {KEY: payload}
    assert files(tmp_path) == []
    assert await read_all(store, KEY) == payload
    assert await store.exists(KEY)


async def test_an_artifact_past_max_bytes_goes_whole_to_the_store_behind_and_no_row(
    store: InlineArtifactStore, pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    chunks = [os.urandom(600), os.urandom(401), os.urandom(10_000), b"end"]
    payload = b"".join(chunks)

    assert await write(store, KEY, *chunks) == (len(payload), hashlib.sha256(payload).hexdigest(), None)

    assert await rows(pg_engine) == {}
    assert (tmp_path / "artifacts" / "job-1" / "attempt-1.csv").read_bytes() == payload
    assert await read_all(store, KEY) == payload
    assert await read_all(store, KEY, 5000, 100) == payload[5000:5100]
    assert await store.exists(KEY)


async def test_an_empty_artifact_is_a_row(store: InlineArtifactStore, pg_engine: AsyncEngine) -> None:
    assert await write(store, KEY) == (0, hashlib.sha256(b"").hexdigest(), b"")
    assert await rows(pg_engine) == {KEY: b""}
    assert await read_all(store, KEY) == b""


@pytest.mark.parametrize(("offset", "length"), [(0, None), (0, 1), (10, 5), (10, None), (99, 1), (99, 50)])
async def test_a_small_artifact_reads_from_an_offset_for_a_length(
    store: InlineArtifactStore, offset: int, length: int | None
) -> None:
    payload = bytes(range(100))
    await write(store, KEY, payload)
    end = None if length is None else offset + length
    assert await read_all(store, KEY, offset, length) == payload[offset:end]


async def test_a_write_that_fails_publishes_nothing_either_side(
    store: InlineArtifactStore, pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    async def fail_after(size: int) -> None:
        async with store.create(f"job-{size}/attempt-1.csv") as sink:
            await sink.write(os.urandom(size))
            raise RuntimeError("encoder broke")

    for size in (10, 5000):  # one still buffered, one already handed to the directory
        with pytest.raises(RuntimeError, match="encoder broke"):
            await fail_after(size)

    assert await rows(pg_engine) == {}
    assert files(tmp_path) == []
    with pytest.raises(ArtifactMissing):
        await read_all(store, "job-5000/attempt-1.csv")


async def test_delete_removes_either_kind_and_is_idempotent(
    store: InlineArtifactStore, pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    await write(store, "small/attempt-1.csv", b"tiny")
    await write(store, "large/attempt-1.csv", os.urandom(5000))

    for key in ("small/attempt-1.csv", "large/attempt-1.csv", "never/attempt-1.csv"):
        await store.delete(key)
        await store.delete(key)
        assert not await store.exists(key)
        with pytest.raises(ArtifactMissing):
            await read_all(store, key)

    assert await rows(pg_engine) == {}
    assert files(tmp_path) == []


async def test_a_small_artifact_has_no_link_and_a_large_one_the_store_behinds(store: InlineArtifactStore) -> None:
    class Linking(FileSystemArtifactStore):
        async def link(self, key: str, expires_in: timedelta) -> str | None:
            return f"https://store.example/{key}"

    await write(store, "small/attempt-1.csv", b"tiny")
    await write(store, "large/attempt-1.csv", os.urandom(5000))
    linking = InlineArtifactStore(store._engine, Linking(store._spill._root), max_bytes=MAX_BYTES)  # type: ignore[attr-defined]

    assert await linking.link("small/attempt-1.csv", timedelta(minutes=5)) is None
    assert (
        await linking.link("large/attempt-1.csv", timedelta(minutes=5)) == "https://store.example/large/attempt-1.csv"
    )


@pytest.fixture
async def refusing() -> AsyncIterator[AsyncEngine]:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/reportgen")  # nothing listens on port 1
    yield engine
    await engine.dispose()


async def test_the_database_down_fails_a_read_as_the_database_unavailable(
    refusing: AsyncEngine, directory: FileSystemArtifactStore, tmp_path: Path
) -> None:
    store = InlineArtifactStore(refusing, directory, max_bytes=MAX_BYTES)

    with pytest.raises(StorageUnavailable):
        await read_all(store, KEY)
    with pytest.raises(StorageUnavailable):
        await store.exists(KEY)
    assert files(tmp_path) == []


@pytest.mark.parametrize("max_bytes", [262_144, 0])
async def test_the_composition_root_puts_the_database_in_front_of_the_store_on_postgresql_only(
    engine: AsyncEngine, max_bytes: int, tmp_path: Path
) -> None:
    settings = Settings(artifact_dir=tmp_path, inline_artifact_max_bytes=max_bytes)

    store = artifact_store(settings, engine)

    inline = engine.dialect.name == "postgresql" and max_bytes > 0
    assert isinstance(store, InlineArtifactStore) == inline
    assert isinstance(store._spill if inline else store, FileSystemArtifactStore)  # type: ignore[attr-defined]
