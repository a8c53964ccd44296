"""Report queries on PostgreSQL or SQLite: read-only, with a deadline, streamed in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncResult

from application.errors import ReportTimedOut
from application.ports import ReportDataSource, Row, RowStream
from domain.reports import Binding, ParameterType, ParamValue
from infrastructure.persistence.engine import close_quietly
from infrastructure.persistence.query_guards import QueryGuard, guard_for, query_errors

log = logging.getLogger(__name__)

# Typed binds make asyncpg send `$1::VARCHAR` and so on, so that `(:region IS NULL OR region = :region)` works
# when the value is NULL (an untyped NULL parameter has no type that PostgreSQL can infer).
_SQL_TYPES: dict[ParameterType, type[sa.types.TypeEngine[Any]]] = {
    ParameterType.STRING: sa.String,
    ParameterType.INTEGER: sa.BigInteger,
    ParameterType.NUMBER: sa.Float,
    ParameterType.BOOLEAN: sa.Boolean,
    ParameterType.DATE: sa.Date,
}


def bind_parameters(bindings: Sequence[Binding]) -> list[sa.BindParameter[Any]]:
    return [sa.bindparam(b.name, _driver_value(b.type, b.value), type_=_SQL_TYPES[b.type]()) for b in bindings]


def _driver_value(kind: ParameterType, value: ParamValue) -> object:
    if value is None:
        return None
    if kind is ParameterType.DATE:
        return date.fromisoformat(str(value))
    if kind is ParameterType.NUMBER:
        return float(value)
    return value


Fetch = Callable[[], Awaitable[Sequence[Row]]]
"""Fetches the next batch of a running query; an empty batch means the rows are exhausted."""


class PrefetchingRowStream(RowStream):
    """Rows in batches, the next one always being fetched while the consumer encodes and writes the current one:
    the database (or SQLite's thread) produces rows on the other core instead of waiting for each request.

    `deadline` (event-loop time) bounds the whole stream, not each fetch: PostgreSQL's statement_timeout starts
    afresh with every FETCH of a cursor, so a report that streams for longer would otherwise never time out.
    """

    def __init__(self, columns: Sequence[str], estimated_rows: int | None, fetch: Fetch, deadline: float) -> None:
        self.columns = columns
        self.estimated_rows = estimated_rows
        self._fetch = fetch
        self._deadline = deadline
        self._pending: asyncio.Future[Sequence[Row]] | None = None

    async def batches(self) -> AsyncIterator[Sequence[Row]]:
        with query_errors():  # a query can fail half-way: a runtime error in a later row, or the timeout
            while batch := await self._next():
                yield batch

    async def _next(self) -> Sequence[Row]:
        if asyncio.get_running_loop().time() >= self._deadline:  # the consumer took the time (a fetch done already)
            raise _streamed_too_long()
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch())
        try:
            async with asyncio.timeout_at(self._deadline):
                batch = await self._pending  # cancelling this await cancels the fetch too; close() then waits for it
        except TimeoutError:
            raise _streamed_too_long() from None
        self._pending = None
        if batch:
            self._pending = asyncio.ensure_future(self._fetch())
            await asyncio.sleep(0)  # let the next fetch send its request before the consumer's CPU-bound work
        return batch

    async def close(self) -> None:
        """Stop a fetch still running (the consumer stopped early): its connection must be idle before it is
        released. Its outcome no longer matters; any error it had was already raised by `batches`."""
        if self._pending is not None:
            _ = self._pending.cancel()
            _ = await asyncio.gather(self._pending, return_exceptions=True)
            self._pending = None


def _streamed_too_long() -> ReportTimedOut:
    return ReportTimedOut("the report ran past its time limit while its rows were streamed")


class SqlReportDataSource(ReportDataSource):
    """Runs each report query on its own pooled connection, in a read-only transaction with a time limit, and
    streams the rows with a server-side cursor (PostgreSQL) or a stepping cursor (SQLite)."""

    # Larger batches measured slower: their rows live long enough to reach the older garbage-collector generations,
    # and full collections (which walk the whole heap) follow.
    def __init__(self, engine: AsyncEngine, batch_size: int = 1000) -> None:
        self._engine = engine
        self._batch_size = batch_size
        self._guard: QueryGuard = guard_for(engine.dialect.name)

    def run(
        self, query: str, bindings: Sequence[Binding], timeout_seconds: float
    ) -> AbstractAsyncContextManager[RowStream]:
        return self._run(query, bindings, timeout_seconds)

    @asynccontextmanager
    async def _run(self, query: str, bindings: Sequence[Binding], timeout_seconds: float) -> AsyncIterator[RowStream]:
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        with query_errors():
            params = bind_parameters(bindings)
            statement = sa.text(query).bindparams(*params)
        async with self._connection(timeout_seconds) as conn:
            with query_errors():
                estimated = await self._guard.estimate_rows(conn, query, params)
            cursor = _asyncpg_cursor if conn.dialect.driver == "asyncpg" else _sqlalchemy_cursor
            async with cursor(conn, statement, self._batch_size) as (columns, fetch):
                stream = PrefetchingRowStream(columns, estimated, _until_short(fetch, self._batch_size), deadline)
                try:
                    yield stream
                finally:
                    await stream.close()

    @asynccontextmanager
    async def _connection(self, timeout_seconds: float) -> AsyncIterator[AsyncConnection]:
        with query_errors():
            conn = await self._engine.connect()
        try:
            with query_errors():
                await self._guard.enter(conn, timeout_seconds)
            try:
                yield conn
            finally:
                await self._guard.leave(conn)
        finally:
            await close_quietly(conn)


@asynccontextmanager
async def _sqlalchemy_cursor(
    conn: AsyncConnection, statement: sa.TextClause, batch_size: int
) -> AsyncIterator[tuple[Sequence[str], Fetch]]:
    """A streaming cursor through SQLAlchemy (SQLite: a stepping cursor, run in aiosqlite's thread)."""
    with query_errors():
        result = await conn.stream(statement)

    async def fetch_batch() -> Sequence[Row]:
        return [tuple(row) for row in await result.fetchmany(batch_size)]

    try:
        yield list(result.keys()), fetch_batch
    finally:
        await _close_result(result)


@asynccontextmanager
async def _asyncpg_cursor(
    conn: AsyncConnection, statement: sa.TextClause, batch_size: int
) -> AsyncIterator[tuple[Sequence[str], Fetch]]:
    """A cursor of asyncpg's own on the connection, in the read-only transaction that the guard began on it.

    The rows are the values that SQLAlchemy would return for a textual query (the same driver decodes them, with
    the codecs SQLAlchemy set on the connection), without its per-row work, which cost more than encoding them.
    The cursor ends with the transaction, which closing the connection rolls back.
    """
    with query_errors():
        sql, args = _positional(statement, conn.dialect)
        driver: Any = (await conn.get_raw_connection()).driver_connection  # asyncpg is untyped
        prepared = await driver.prepare(sql)
        cursor = await prepared.cursor(*args)

    async def fetch_batch() -> Sequence[Row]:
        return list(map(tuple, await cursor.fetch(batch_size)))

    yield [attribute.name for attribute in prepared.get_attributes()], fetch_batch


def _until_short(fetch: Fetch, batch_size: int) -> Fetch:
    """A batch shorter than asked for was the last one: answer the next call with no rows, without a round trip
    (a small report then costs one FETCH, not two)."""
    exhausted = False

    async def fetch_until_short() -> Sequence[Row]:
        nonlocal exhausted
        if exhausted:
            return []
        batch = await fetch()
        exhausted = len(batch) < batch_size
        return batch

    return fetch_until_short


def _positional(statement: sa.TextClause, dialect: Dialect) -> tuple[str, list[object]]:
    """The statement as the dialect writes it (`$1::VARCHAR`) and its values in order, processed as SQLAlchemy
    processes them when it executes the statement itself."""
    state = statement.compile(dialect=dialect).construct_expanded_state()

    def bound(name: str) -> object:
        value, processor = state.parameters[name], state.processors.get(name)
        return value if processor is None else processor(value)

    return state.statement, [bound(name) for name in state.positiontup or ()]


async def _close_result(result: AsyncResult[Any]) -> None:
    try:
        await result.close()
    except Exception:  # the connection is closed next, which ends the cursor anyway
        log.warning("closing a report query's cursor failed", exc_info=True)
