"""Async engines for PostgreSQL (asyncpg) and SQLite (aiosqlite), and the one place where driver and
connection errors become `StorageUnavailable`."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from application.errors import StorageUnavailable
from domain.errors import FieldError, InvalidInput

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5_000
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10

_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
_SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
)

# Connection exceptions, insufficient resources, shutdown / cannot connect now, authentication, unknown
# database, the transient failures that a retry resolves (serialization failure, deadlock), and a service
# statement ended by its lock or statement timeout (lock_not_available, query_canceled; see `SERVICE_TIMEOUTS`).
_TIMEOUT_SQLSTATES = ("55P03", "57014")
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03", "28", "3D000", "40001", "40P01", *_TIMEOUT_SQLSTATES)
_UNAVAILABLE_SQLITE_ERRORS = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")
_UNAVAILABLE_TYPES = (
    OSError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed": a streaming cursor can raise it unwrapped
)


@dataclass(frozen=True, slots=True)
class ServiceTimeouts:
    """Bounds on every statement of the service's own engine on PostgreSQL (reports run on an engine without them):
    a wait for a lock, a statement, a transaction left idle. Each ends in 55P03 or 57014, which is unavailable."""

    lock_seconds: float
    statement_seconds: float

    def server_settings(self) -> dict[str, str]:
        statement = str(milliseconds(self.statement_seconds))
        return {
            "lock_timeout": str(milliseconds(self.lock_seconds)),
            "statement_timeout": statement,
            "idle_in_transaction_session_timeout": statement,
        }


def milliseconds(seconds: float) -> int:
    """A PostgreSQL timeout setting's value for `seconds`."""
    return max(1, round(seconds * 1000))  # 0 would mean "no timeout"


def create_engine(
    url: str, *, timeouts: ServiceTimeouts | None = None, application_name: str | None = None, **pool_options: Any
) -> AsyncEngine:
    """An engine for `postgresql+asyncpg://...` or `sqlite+aiosqlite:///path` (plain `postgresql://` and
    `sqlite:///` are given those drivers). SQLite: the file's directory is created, and every connection
    uses WAL, a busy timeout and foreign keys. PostgreSQL: `timeouts` and `application_name` (what
    `pg_stat_activity` shows) become each connection's settings. `pool_options` go to `create_async_engine`."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database driver {parsed.drivername!r}: use postgresql+asyncpg or sqlite+aiosqlite"
        )
    parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, pool_options)
    connect_args = {"timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS, **pool_options.pop("connect_args", {})}
    server_settings = dict(connect_args.get("server_settings", {}))
    if timeouts is not None:
        server_settings |= timeouts.server_settings()
    if application_name is not None:
        server_settings["application_name"] = application_name
    if server_settings:
        connect_args["server_settings"] = server_settings
    return create_async_engine(parsed, connect_args=connect_args, **pool_options)


def _sqlite_engine(url: URL, pool_options: dict[str, Any]) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **pool_options)
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot be reached or failed transiently (retrying may succeed)."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    driver_error = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    if isinstance(driver_error, sqlite3.Error):  # its InterfaceError is a binding mistake, not a lost connection
        return (driver_error.sqlite_errorname or "").startswith(_UNAVAILABLE_SQLITE_ERRORS)
    sqlstate = getattr(driver_error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    return isinstance(error, _UNAVAILABLE_TYPES) or isinstance(driver_error, _UNAVAILABLE_TYPES)


def _sqlstate(error: BaseException) -> str | None:
    driver_error = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    sqlstate = getattr(driver_error, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


def describe(error: BaseException) -> str:
    """A short, SQL-free name for a driver error: its SQLSTATE, SQLite error name, or exception class."""
    driver_error = error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig is not None else error
    code = getattr(driver_error, "sqlstate", None)
    if isinstance(driver_error, sqlite3.Error):
        code = driver_error.sqlite_errorname
    return f"{type(driver_error).__name__} {code}" if code else type(driver_error).__name__


@contextmanager
def storage_errors() -> Iterator[None]:
    """Wrap database calls: connection problems and transient failures become StorageUnavailable
    (whose message names the error class and code, never SQL text); a value the database refused (SQLSTATE class
    22, data exception) becomes InvalidInput, a 422; other errors pass unchanged.

    The second is a safety net: the API checks what it takes in before it reaches the database, naming the field
    (`domain.text`, the domain's rules); a value that gets past them is still the client's, not a 500."""
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(exc) from exc
        code = _sqlstate(exc)
        if code is not None and code.startswith("22"):
            message = f"a value could not be stored (SQLSTATE {code}); check the values you sent"
            raise InvalidInput([FieldError("body", message)]) from exc
        raise


def unavailable(error: BaseException, database: str = "the database") -> StorageUnavailable:
    """The StorageUnavailable for an error that `is_unavailable`: of the pool (`database_pool`) when no pooled
    connection came free within the pool's timeout, else of the database, named by `describe`."""
    if isinstance(error, sa_exc.TimeoutError):  # raised by SQLAlchemy's pool only, never by a query
        message = f"every pooled connection to {database} stayed busy past the pool's timeout"
        return StorageUnavailable(message, cause="database_pool")
    if _sqlstate(error) in _TIMEOUT_SQLSTATES:
        message = f"a statement on {database} ran or waited for a lock past its timeout ({describe(error)})"
        return StorageUnavailable(message, cause="database_timeout")
    return StorageUnavailable(f"{database} is unavailable ({describe(error)})")


async def close_quietly(conn: AsyncConnection) -> None:
    """Close (and so roll back) a connection; a connection that breaks while closing is only logged, since its
    uncommitted work is lost either way and an error here would hide the caller's outcome or exception."""
    try:
        with storage_errors():
            await conn.close()
    except StorageUnavailable:
        log.warning("closing a database connection failed", exc_info=True)
