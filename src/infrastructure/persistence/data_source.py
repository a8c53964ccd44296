"""Report queries on PostgreSQL or SQLite: read-only, with a deadline, streamed in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date
from functools import lru_cache
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncResult

from application.errors import ReportQueryFailed, StorageUnavailable
from application.ports import EncodedWrite, ReportDataSource, Row, RowEncoder, RowStream
from domain.reports import Binding, ParameterType, ParamValue
from infrastructure.persistence.csv_copy import COPY_MIN_ROWS, copy_csv, copy_query
from infrastructure.persistence.driver import DriverStatement, driver_connection
from infrastructure.persistence.engine import close_quietly, milliseconds
from infrastructure.persistence.query_guards import SqliteGuard, estimate_from_plan, query_errors, streamed_too_long

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


UNREADABLE_VALUE = (
    "a value of the result has no equivalent here: most likely a date or timestamp before the year 1 or after 9999 "
    "(Python's range); cast such a column to text in the query"
)
"""The message of a report whose rows hold a value the driver cannot turn into a Python one."""


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
            raise streamed_too_long()
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch())
        try:
            async with asyncio.timeout_at(self._deadline):
                batch = await self._pending  # cancelling this await cancels the fetch too; close() then waits for it
        except TimeoutError:
            raise streamed_too_long() from None
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


class PostgresRowStream(PrefetchingRowStream):
    """A report query on PostgreSQL, described (parsed, not run) before anything reads it: its columns and their
    types are known, and it runs once, when the rows are read, in one of two ways:

    - `batches` (and `encode` otherwise): a cursor of the described statement, 1,000 rows a FETCH; the plan's row
      estimate is asked for only when the first batch is full (a first short batch is the exact count).
    - `encode` of a big CSV report whose columns COPY writes as the encoder does (csv_copy.copy_query): the plan's
      estimate first (EXPLAIN, without running it), then, at `copy_min_rows` or more, COPY of the query, whose bytes
      are written as they arrive and their rows counted for the progress. `copied` says which way it ran.
    """

    def __init__(
        self,
        conn: Any,
        statement: Any,
        compiled: tuple[str, list[object]],
        deadline: float,
        *,
        batch_size: int,
        copy_min_rows: int | None,
    ) -> None:
        attributes = statement.get_attributes()
        super().__init__([a.name for a in attributes], None, _until_short(self._fetch_batch, batch_size), deadline)
        self._conn = conn
        self._statement = statement
        self._sql, self._args = compiled
        self._types = [a.type.oid for a in attributes]
        self._batch_size = batch_size
        self._copy_min_rows = copy_min_rows
        self._cursor: Any = None
        self.copied = False

    async def encode(self, encoder: RowEncoder, write: EncodedWrite) -> None:
        query = self._copy_query(encoder)
        if query is not None:
            with query_errors():
                self.estimated_rows = await estimate_from_plan(self._conn, self._sql, self._args)
            if (self.estimated_rows or 0) >= (self._copy_min_rows or 0):
                self.copied = True
                await self._copy(query, write)
                return
        await super().encode(encoder, write)

    def _copy_query(self, encoder: RowEncoder) -> str | None:
        if self._copy_min_rows is None:
            return None
        date_style = str(getattr(self._conn.get_settings(), "DateStyle", ""))
        return copy_query(encoder, self._sql, self._args, self._types, date_style)

    async def _copy(self, query: str, write: EncodedWrite) -> None:
        """COPY's statement_timeout counts from its start, a little after the transaction's: the deadline is kept on
        this side too, as the cursor's is."""
        with query_errors():
            try:
                async with asyncio.timeout_at(self._deadline):
                    await copy_csv(self._conn, query, write)
            except TimeoutError:
                raise streamed_too_long() from None

    async def _fetch_batch(self) -> Sequence[Row]:
        if self._cursor is not None:
            return list(map(tuple, await self._records(self._cursor.fetch(self._batch_size))))
        self._cursor = _cursor(self._conn, self._statement, self._args)
        first = await self._records(_open_with_first_rows(self._cursor, self._batch_size))
        if self.estimated_rows is None:
            full = len(first) == self._batch_size
            self.estimated_rows = await estimate_from_plan(self._conn, self._sql, self._args) if full else len(first)
        return list(map(tuple, first))

    @staticmethod
    async def _records(fetch: Awaitable[list[Any]]) -> list[Any]:
        try:
            return await fetch
        except asyncpg.InterfaceError:  # the driver's own errors (its DataError is a ValueError too): as they are
            raise
        except (ValueError, OverflowError) as exc:  # asyncpg could not make a Python value of one it received
            raise ReportQueryFailed(UNREADABLE_VALUE, detail=str(exc)) from None


class SqlReportDataSource(ReportDataSource):
    """Runs each report query on its own pooled connection, in a read-only transaction with a time limit, and
    streams the rows: through a cursor of asyncpg's own on PostgreSQL, through SQLAlchemy on SQLite. With `copy_csv`,
    a big CSV report on PostgreSQL is written by COPY where its bytes are the CSV encoder's (PostgresRowStream)."""

    # Larger batches measured slower: their rows live long enough to reach the older garbage-collector generations,
    # and full collections (which walk the whole heap) follow.
    def __init__(
        self, engine: AsyncEngine, batch_size: int = 1000, *, copy_csv: bool = False, copy_min_rows: int = COPY_MIN_ROWS
    ) -> None:
        self._engine = engine
        self._batch_size = batch_size
        self._copy_csv = copy_csv
        self._copy_min_rows = copy_min_rows
        self._postgres = engine.dialect.name == "postgresql"

    def run(
        self, query: str, bindings: Sequence[Binding], timeout_seconds: float
    ) -> AbstractAsyncContextManager[RowStream]:
        if self._postgres:
            return self._run_postgres(query, bindings, timeout_seconds)
        return self._run_sqlite(query, bindings, timeout_seconds)

    @asynccontextmanager
    async def _run_postgres(
        self, query: str, bindings: Sequence[Binding], timeout_seconds: float
    ) -> AsyncIterator[RowStream]:
        """On the driver connection (see driver.py): a small report costs three round trips (the transaction and
        its time limit, the cursor opened with its first batch, the rollback) and none of SQLAlchemy's execution
        layer; a CSV report one more, the plan's estimate (see PostgresRowStream). The query
        is described first (asyncpg's statement cache holds it: no round trip after a report's first job), and runs
        once, when its rows are read (see PostgresRowStream).

        A connection whose report failed or was cancelled is discarded, not reused.
        """
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        with query_errors():
            compiled = _positional(self._engine.dialect, query, bindings)
        done = False
        try:
            async with driver_connection(self._engine) as conn:
                with query_errors():
                    await conn.execute(
                        f"BEGIN READ ONLY; SET LOCAL statement_timeout = {milliseconds(timeout_seconds)}"
                    )
                    statement = await _described(conn, compiled[0])
                # COPY takes no parameters: their values are written into its text in place of each `$n`, which
                # a `$` of the query's own would confuse.
                copy_min_rows = self._copy_min_rows if self._copy_csv and "$" not in query else None
                stream = PostgresRowStream(
                    conn, statement, compiled, deadline, batch_size=self._batch_size, copy_min_rows=copy_min_rows
                )
                try:
                    yield stream
                finally:
                    await stream.close()
                done = True
                await _end_report_session(conn)
        except StorageUnavailable:
            if not done:
                raise
            # The connection broke after the consumer was done: it is discarded, and the report is not spoilt.
            log.warning("ending a report query's transaction failed; its connection is discarded", exc_info=True)

    @asynccontextmanager
    async def _run_sqlite(
        self, query: str, bindings: Sequence[Binding], timeout_seconds: float
    ) -> AsyncIterator[RowStream]:
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        guard = SqliteGuard()
        with query_errors():
            params = bind_parameters(bindings)
            statement = sa.text(query).bindparams(*params)
        async with self._connection(guard, timeout_seconds) as conn:
            with query_errors():
                estimated = await guard.estimate_rows(conn, query, params)
            async with _sqlalchemy_cursor(conn, statement, self._batch_size) as (columns, fetch):
                stream = PrefetchingRowStream(columns, estimated, _until_short(fetch, self._batch_size), deadline)
                try:
                    yield stream
                finally:
                    await stream.close()

    @asynccontextmanager
    async def _connection(self, guard: SqliteGuard, timeout_seconds: float) -> AsyncIterator[AsyncConnection]:
        with query_errors():
            conn = await self._engine.connect()
        try:
            with query_errors():
                await guard.enter(conn, timeout_seconds)
            try:
                yield conn
            finally:
                await guard.leave(conn)
        finally:
            await close_quietly(conn)


# Ends the report's transaction and undoes what can outlive it: advisory locks taken at session level, cursors held
# open, LISTEN, session settings, temporary objects. asyncpg's own cached statements stay (they are the service's).
# Prepared statements are the one thing that cannot be dropped selectively: one the report made (SQL PREPARE) gets
# its connection discarded. The look for them ends the same script, so the whole end is one round trip: a simple
# query answers with the status of its last statement, `SELECT 0` when the report left none.
FOREIGN_PREPARED_STATEMENTS = r"SELECT FROM pg_prepared_statements WHERE name NOT LIKE '\_\_asyncpg\_%' LIMIT 1"
_END_REPORT_SESSION = (
    "ROLLBACK; SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES; "
    + FOREIGN_PREPARED_STATEMENTS
)
_NO_FOREIGN_PREPARED_STATEMENTS = "SELECT 0"


async def _end_report_session(conn: Any) -> None:
    """Give the connection back to the pool as a new one would be: nothing a report did outlives it."""
    if await conn.execute(_END_REPORT_SESSION) != _NO_FOREIGN_PREPARED_STATEMENTS:
        raise StorageUnavailable("a report left prepared statements on its connection; the connection is discarded")


async def _described(conn: Any, sql: str) -> Any:
    """The query parsed and described by PostgreSQL (its result columns and their types), not run.

    asyncpg's private `_prepare(..., use_cache=True)`: the public `Connection.prepare` always parses the query again
    (one more round trip for every report) and leaves a statement to close (another, later), where this one takes the
    connection's cached statement, the same one `Connection.cursor(sql)` would take. What is used of the statement is
    public: `get_attributes`, `explain`, `cursor`."""
    return await conn._prepare(sql, use_cache=True)  # a private call: see the docstring


def _cursor(conn: Any, statement: Any, args: Sequence[object]) -> Any:
    """A cursor of the described statement for `args`, not opened yet (`_open_with_first_rows` opens it).

    asyncpg's `Cursor`, made as `PreparedStatement.cursor(*args)` makes it before awaiting it: awaiting it opens the
    portal in a round trip of its own, and its first `fetch` takes another."""
    return asyncpg.cursor.Cursor(conn, statement._query, statement._state, args, statement._state.record_class)


async def _open_with_first_rows(cursor: Any, n: int) -> list[Any]:
    """Open the cursor and fetch its first `n` rows in one round trip (Bind and Execute sent together), as asyncpg's
    cursor iterator opens its cursors; `fetch` reads the rest. A private call of asyncpg (`uv.lock` pins it; the data
    source's integration tests run it)."""
    records: list[Any] = await cursor._bind_exec(n, None)
    return records


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


def _positional(dialect: Dialect, query: str, bindings: Sequence[Binding]) -> tuple[str, list[object]]:
    """The statement as the dialect writes it (`$1::VARCHAR`) and its values in order, processed as SQLAlchemy
    processes them when it executes the statement itself."""
    compiled = _compiled(dialect, query, tuple((b.name, b.type) for b in bindings))
    values = {b.name: _driver_value(b.type, b.value) for b in bindings}
    try:
        return compiled.sql, compiled.arguments(values)
    except KeyError as missing:  # the query names a parameter that the report does not declare
        raise ReportQueryFailed(f"A value is required for bind parameter {missing.args[0]!r}") from None


@lru_cache(maxsize=256)
def _compiled(dialect: Dialect, query: str, kinds: tuple[tuple[str, ParameterType], ...]) -> DriverStatement:
    """Compiled once per query text and parameter types (every job of a report shares them): compiling costs
    more than running a small report."""
    statement = sa.text(query).bindparams(*(sa.bindparam(name, type_=_SQL_TYPES[kind]()) for name, kind in kinds))
    return DriverStatement.compile(statement, dialect)


async def _close_result(result: AsyncResult[Any]) -> None:
    try:
        await result.close()
    except Exception:  # the connection is closed next, which ends the cursor anyway
        log.warning("closing a report query's cursor failed", exc_info=True)
