"""Report queries on PostgreSQL or SQLite: read-only, with a deadline, streamed in batches."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncResult

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


@dataclass
class SqlRowStream(RowStream):
    columns: Sequence[str]
    estimated_rows: int | None
    _result: AsyncResult[Any]
    _batch_size: int

    async def batches(self) -> AsyncIterator[Sequence[Row]]:
        with query_errors():  # a query can fail half-way: a runtime error in a later row, or the timeout
            async for partition in self._result.partitions(self._batch_size):
                yield [tuple(row) for row in partition]


class SqlReportDataSource(ReportDataSource):
    """Runs each report query on its own pooled connection, in a read-only transaction with a time limit, and
    streams the rows with a server-side cursor (PostgreSQL) or a stepping cursor (SQLite)."""

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
        with query_errors():
            params = bind_parameters(bindings)
            statement = sa.text(query).bindparams(*params)
        async with self._connection(timeout_seconds) as conn:
            with query_errors():
                estimated = await self._guard.estimate_rows(conn, query, params)
                result = await conn.stream(statement)
            try:
                yield SqlRowStream(list(result.keys()), estimated, result, self._batch_size)
            finally:
                await _close_result(result)

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


async def _close_result(result: AsyncResult[Any]) -> None:
    try:
        await result.close()
    except Exception:  # the connection is closed next, which ends the cursor anyway
        log.warning("closing a report query's cursor failed", exc_info=True)
