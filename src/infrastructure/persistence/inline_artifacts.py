"""Small artifacts as rows of the service database (PostgreSQL); larger ones in the artifact store it wraps.

Most reports are small. Kept in a file, each such result costs a temporary file, two fsyncs and a rename, done in a
thread; kept in a bucket, a request to the object store. As a row of `inline_artifacts` it costs nothing of its own:
the job ledger stores it with the job's outcome, in the same statement (statements.INSERT_INLINE_ARTIFACT), made
durable by that commit, and any API replica can serve it. So this store does not write small artifacts itself: its
sink buffers a report up to `max_bytes` and hands the bytes over as `content` (which the worker passes on as
`ArtifactRef.content`); the first write past `max_bytes` sends the buffered bytes to the wrapped store, and the rest
streams there as before, so memory stays bounded whatever a report's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import ArtifactLabel, ArtifactSink, ArtifactStore
from infrastructure.persistence.driver import DriverStatement
from infrastructure.persistence.tables import inline_artifacts

_THIS_KEY = inline_artifacts.c.key == sa.bindparam("where_key")
GET_CONTENT = sa.select(inline_artifacts.c.content).where(_THIS_KEY)
EXISTS = sa.select(sa.exists().where(_THIS_KEY))
DELETE_ARTIFACT = sa.delete(inline_artifacts).where(_THIS_KEY).returning(inline_artifacts.c.key)


class _InlineSink(ArtifactSink):
    """Buffers an artifact until it grows past `max_bytes`; from then on, it writes to the sink `open_spill` gives."""

    def __init__(self, max_bytes: int, open_spill: Callable[[], AbstractAsyncContextManager[ArtifactSink]]) -> None:
        self._max_bytes = max_bytes
        self._open_spill = open_spill
        self.buffer = bytearray()
        self.spill: ArtifactSink | None = None
        self.exits = AsyncExitStack()

    async def write(self, chunk: bytes) -> None:
        if self.spill is not None:
            await self.spill.write(chunk)
            return
        self.buffer += chunk
        if len(self.buffer) > self._max_bytes:
            self.spill = await self.exits.enter_async_context(self._open_spill())
            buffered, self.buffer = self.buffer, bytearray()
            await self.spill.write(bytes(buffered))

    @property
    def content(self) -> bytes | None:
        return bytes(self.buffer) if self.spill is None else None

    @property
    def size(self) -> int:
        return len(self.buffer) if self.spill is None else self.spill.size

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.buffer).hexdigest() if self.spill is None else self.spill.sha256


class InlineArtifactStore(ArtifactStore):
    """Artifacts of at most `max_bytes` in the `inline_artifacts` table of `engine`'s database, written by the job
    ledger with the job's outcome (see the module); the others in `spill`.

    Reads, checks and deletes look in the table first, then in `spill`: a key is in one of them. A small artifact
    has no presigned link (`link` is None): the API streams it, whatever `REPORTGEN_RESULT_DELIVERY` says.
    A read of the table while the database is down raises StorageUnavailable, as every other read of it does.
    """

    def __init__(self, engine: AsyncEngine, spill: ArtifactStore, *, max_bytes: int) -> None:
        self._engine = engine
        self._spill = spill
        self._max_bytes = max_bytes
        dialect = engine.dialect
        self._get = DriverStatement.compile(GET_CONTENT, dialect)
        self._exists = DriverStatement.compile(EXISTS, dialect)
        self._delete = DriverStatement.compile(DELETE_ARTIFACT, dialect)

    def create(self, key: str, label: ArtifactLabel | None = None) -> AbstractAsyncContextManager[ArtifactSink]:
        return self._create(key, label)

    @asynccontextmanager
    async def _create(self, key: str, label: ArtifactLabel | None) -> AsyncIterator[ArtifactSink]:
        sink = _InlineSink(self._max_bytes, lambda: self._spill.create(key, label))
        async with sink.exits:  # a spilled artifact is published (or discarded, on an error) by its own store
            yield sink

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        content = await self._get.fetchval(self._engine, {"where_key": key})
        if content is None:
            async for chunk in self._spill.read(key, offset, length):
                yield chunk
            return
        yield content[offset:] if length is None else content[offset : offset + length]

    async def exists(self, key: str) -> bool:
        return bool(await self._exists.fetchval(self._engine, {"where_key": key})) or await self._spill.exists(key)

    async def delete(self, key: str) -> None:
        if await self._delete.fetchval(self._engine, {"where_key": key}) is None:
            await self._spill.delete(key)

    async def sweep_temporary(self, older_than_seconds: float) -> int:
        return await self._spill.sweep_temporary(older_than_seconds)

    async def link(self, key: str, expires_in: timedelta) -> str | None:
        if await self._exists.fetchval(self._engine, {"where_key": key}):
            return None
        return await self._spill.link(key, expires_in)
