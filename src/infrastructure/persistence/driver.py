"""The asyncpg connection under a pooled SQLAlchemy connection, for the hot paths on PostgreSQL.

SQLAlchemy keeps the pool, the engine's settings and the statements themselves: the statements that every poll,
every generate request and every job runs are the Core statements of statements.py, compiled once for the dialect
(`DriverStatement`) and sent on the driver connection, skipping only SQLAlchemy's per-call execution layer, which
costs more than these tiny primary-key statements (bench/README.md has the figures). Such statements run in
autocommit, as asyncpg does unless told otherwise (a report query opens and ends its own read-only transaction);
the connection goes back to the pool afterwards, or is discarded if anything failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_only

from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.greenlets import run_sync

T = TypeVar("T")


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """`async with driver_connection(engine) as conn:` an `asyncpg.Connection` of the engine's pool.

    Driver and connection errors become StorageUnavailable, as everywhere in the persistence adapters.
    """
    with storage_errors():
        pooled = await run_sync(engine.sync_engine.raw_connection)
    try:
        with storage_errors():
            yield pooled.driver_connection
    except BaseException:
        # Broken, or interrupted mid-statement (cancelled): never hand it to the next request.
        await run_sync(pooled.invalidate)
        raise
    await run_sync(pooled.close)  # back to the pool; checking in may do I/O (a reset, or closing it)


async def run_on_driver(engine: AsyncEngine, statement: Callable[[Any], Awaitable[T]]) -> T:
    """`await run_on_driver(engine, lambda conn: conn.fetchrow(...))`: one statement on a driver connection.

    The same as awaiting it in `driver_connection`, but the check-out and the check-in happen in one switch to a
    greenlet instead of two.
    """
    with storage_errors():
        return await run_sync(_checked_out, engine.sync_engine, statement)


def _checked_out(engine: Engine, statement: Callable[[Any], Awaitable[T]]) -> T:
    pooled = engine.raw_connection()
    try:
        result = await_only(statement(pooled.driver_connection))
    except BaseException:
        pooled.invalidate()  # broken, or interrupted mid-statement (cancelled)
        raise
    pooled.close()
    return result


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A SQLAlchemy Core statement compiled once for a dialect, to run on the driver connection: `sql` as the
    dialect writes it (`$1::UUID`), and `arguments(values)` turns named values into the positional list, processed
    as SQLAlchemy processes them when it runs the statement itself (bind casts, JSON, UTC datetimes)."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    """Values written into the statement itself (`status = 'Queued'`), bound like the others."""
    processors: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def compile(cls, statement: ClauseElement, dialect: Dialect) -> DriverStatement:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # noqa: S101 - what compiling a Core statement gives
        names = tuple(compiled.positiontup or ())
        defaults = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        # What SQLAlchemy's own execution applies to each value; it has no public name (SQLAlchemy 2.0 and 2.1).
        # (A sequence of processors belongs to a tuple-typed parameter, which these statements do not have.)
        processors = {name: process for name, process in compiled._bind_processors.items() if callable(process)}
        return cls(compiled.string, names, defaults, processors)

    def arguments(self, values: Mapping[str, object]) -> list[object]:
        """The positional arguments; raises KeyError naming a bind parameter that has no value."""
        arguments = []
        for name in self.names:
            value = values[name] if name in values else self.defaults[name]
            processor = self.processors.get(name)
            arguments.append(value if processor is None else processor(value))
        return arguments

    async def fetchrow(self, engine: AsyncEngine, values: Mapping[str, object]) -> Any:
        """The first row (an asyncpg Record) or None, in autocommit on a driver connection of `engine`."""
        args = self.arguments(values)
        return await run_on_driver(engine, lambda conn: conn.fetchrow(self.sql, *args))

    async def fetchval(self, engine: AsyncEngine, values: Mapping[str, object]) -> Any:
        """The first column of the first row, or None."""
        args = self.arguments(values)
        return await run_on_driver(engine, lambda conn: conn.fetchval(self.sql, *args))
