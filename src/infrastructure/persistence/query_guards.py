"""What makes a report query safe to run on each database: a read-only transaction, a deadline, a cheap row
estimate, and errors translated into what the application understands (never SQL text)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from application.errors import ReportQueryFailed, ReportTimedOut
from infrastructure.persistence.engine import is_unavailable, unavailable

log = logging.getLogger(__name__)

Params = Sequence[sa.BindParameter[Any]]

WRITE_ATTEMPT = "the query tried to change data; report queries must be read-only"
_TIMEOUT_CODES = ("57014", "SQLITE_INTERRUPT")  # query_canceled (statement_timeout); interrupted
_WRITE_CODES = ("25006", "SQLITE_READONLY")  # read_only_sql_transaction; PRAGMA query_only
_MAX_MESSAGE = 300
_SQLITE_PROGRESS_STEPS = 1_000  # SQLite VM instructions between two looks at the deadline


async def estimate_from_plan(conn: Any, sql: str, args: Sequence[object]) -> int | None:
    """PostgreSQL's own guess of a query's row count, from its plan (EXPLAIN without ANALYZE plans the query, it does
    not run it), on an asyncpg connection.

    Not asyncpg's `PreparedStatement.explain`: it decodes the plan with `json.loads`, after SQLAlchemy's asyncpg
    dialect (whose pool the connection is from) has already decoded the `json` column, and fails."""
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    try:
        return int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])
    except (TypeError, LookupError, ValueError):
        return None


def streamed_too_long() -> ReportTimedOut:
    """The report's deadline passed while its rows were on their way (PostgreSQL's statement_timeout applies afresh
    to each FETCH of a cursor, so the deadline is also kept on this side)."""
    return ReportTimedOut("the report ran past its time limit while its rows were streamed")


class SqliteGuard:
    """What makes a report query safe on SQLite: `query_only`, and a progress handler that interrupts it at its
    deadline."""

    async def enter(self, conn: AsyncConnection, timeout_seconds: float) -> None:
        """Make the connection read-only with a deadline, before the query's transaction begins."""
        deadline = time.monotonic() + timeout_seconds
        driver = await _aiosqlite_connection(conn)
        # Runs in SQLite's thread during the query; a non-zero answer interrupts it (SQLITE_INTERRUPT).
        await driver.set_progress_handler(lambda: int(time.monotonic() > deadline), _SQLITE_PROGRESS_STEPS)
        await conn.exec_driver_sql("PRAGMA query_only = ON")

    async def estimate_rows(self, conn: AsyncConnection, query: str, params: Params) -> int | None:
        """The query's row count (SQLite has no plan estimate), or None."""
        body = query.strip().rstrip(";")
        count = sa.text(f"SELECT count(*) FROM (\n{body}\n)").bindparams(*params)  # noqa: S608 - the report's own query
        try:
            return int(await conn.scalar(count) or 0)
        except sa_exc.DBAPIError as exc:
            if _code(exc) in _TIMEOUT_CODES or is_unavailable(exc):
                raise
            return None  # not countable this way; running the query itself reports any real error

    async def leave(self, conn: AsyncConnection) -> None:
        """Undo `enter` before the connection goes back to the pool."""
        try:
            await conn.rollback()  # ends the read transaction of an unfinished or failed query
            await conn.exec_driver_sql("PRAGMA query_only = OFF")
            await (await _aiosqlite_connection(conn)).set_progress_handler(None, 0)
        except Exception:
            log.warning("could not reset a SQLite connection after a report query; discarding it", exc_info=True)
            await conn.invalidate()


async def _aiosqlite_connection(conn: AsyncConnection) -> Any:
    return (await conn.get_raw_connection()).driver_connection


@contextmanager
def query_errors() -> Iterator[None]:
    """Translate errors of a report query: timeout -> ReportTimedOut, write attempt or any other database
    error -> ReportQueryFailed with the database's one-line message, connection problem -> StorageUnavailable."""
    try:
        yield
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from exc


def _translate(exc: Exception) -> Exception | None:
    code = _code(exc)
    if code in _TIMEOUT_CODES:  # the report's own time limit: is_unavailable says so of a service statement's
        return ReportTimedOut("the report query ran past its time limit")
    if is_unavailable(exc):
        return unavailable(exc, "the reporting database")
    if code is None and not isinstance(exc, sa_exc.StatementError | sa_exc.ArgumentError):
        return None
    if code is not None and code.startswith(_WRITE_CODES):
        return ReportQueryFailed(WRITE_ATTEMPT)
    return ReportQueryFailed(_advice(code), detail=_primary_message(exc))


def _advice(code: str | None) -> str:
    """What a user who may run the report, but not read its SQL, can do about a failure with this SQLSTATE (or
    SQLite error name): the database's message itself can quote values and names from the query."""
    if code is None:  # refused before it reached the database: a value that cannot be bound
        return "a parameter value could not be passed to the query; check the parameters you sent"
    if code.startswith("SQLITE"):
        return f"the database refused the query ({code}); an administrator can see why on this job"
    advice = _ADVICE_BY_CLASS.get(code[:2], "an administrator can see the database's message on this job")
    return f"{advice} (SQLSTATE {code}, class {code[:2]})"


_ADVICE_BY_CLASS = {
    "22": "a value could not be processed; check the parameters you sent",
    "42": "the report's query is invalid or uses something it may not; an administrator must fix the report",
    "54": "the report went past a limit of the database; narrow it with its parameters, or ask an administrator",
    "P0": "the report's query raised an error of its own; check the parameters you sent",
}
"""Advice by SQLSTATE class (the first two characters): data exception, syntax error or access rule violation,
program limit exceeded, PL/pgSQL error."""


def _code(exc: Exception) -> str | None:
    """The SQLSTATE or SQLite error name of a database error, wrapped by SQLAlchemy or not (SQLAlchemy 2.1 lets
    some asyncpg errors of a streaming cursor through unwrapped)."""
    driver_error = exc.orig if isinstance(exc, sa_exc.StatementError) else exc
    if isinstance(driver_error, sqlite3.Error):
        return driver_error.sqlite_errorname
    code = getattr(driver_error, "sqlstate", None)
    return code if isinstance(code, str) else None


def _primary_message(exc: Exception) -> str:
    """The driver's own message, first line only: never the statement that SQLAlchemy appends to its errors."""
    error = exc.orig if isinstance(exc, sa_exc.StatementError) and exc.orig is not None else exc
    text = error.args[0] if error.args and isinstance(error.args[0], str) else ""
    lines = text.strip().splitlines()
    return lines[0][:_MAX_MESSAGE] if lines else type(error).__name__
