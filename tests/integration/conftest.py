"""Databases for the integration tests: a PostgreSQL database of this test session's own and a SQLite file,
each migrated once; `engine` runs a test on both, with every table emptied first."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.migrate import migrate
from infrastructure.persistence.tables import metadata
from tests.integration.persistence_helpers import in_thread, run_async
from tests.s3_server import S3Server, s3_server
from tests.services import DATABASE_URL, require

TEST_DATABASE_PREFIX = "reportgen_test_"


async def _admin(statement: str) -> None:
    dsn = make_url(DATABASE_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_database() -> str:
    """A new, empty PostgreSQL database; returns its SQLAlchemy URL."""
    require("PostgreSQL", DATABASE_URL)
    name = f"{TEST_DATABASE_PREFIX}{secrets.token_hex(6)}"
    run_async(lambda: _admin(f'CREATE DATABASE "{name}"'))
    return make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database or ""
    assert name.startswith(TEST_DATABASE_PREFIX), f"refusing to drop {name!r}"
    run_async(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The session's own PostgreSQL database, migrated; dropped at the end of the session."""
    url = create_database()
    try:
        in_thread(migrate, url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def sqlite_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite")


@pytest.fixture(scope="session")
def sqlite_url(sqlite_root: Path) -> str:
    url = f"sqlite+aiosqlite:///{sqlite_root / 'reportgen.db'}"
    in_thread(migrate, url)
    return url


def disposable(url: str, sqlite_root: Path) -> str:
    """`url`, once it is sure to be a database that this session may empty: its own PostgreSQL database, or a
    SQLite file in its temporary directory."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite":
        assert Path(database).resolve().is_relative_to(sqlite_root.resolve()), f"refusing to empty {database!r}"
    else:
        assert database.startswith(TEST_DATABASE_PREFIX), f"refusing to empty {database!r}"
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_root: Path) -> str:
    url: str = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    return disposable(url, sqlite_root)


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own, with no tables at all (for migration tests)."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables at all, on PostgreSQL then on SQLite (for migration tests)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("empty_pg_url")
    return url


async def emptied(url: str) -> AsyncEngine:
    engine = create_engine(url)
    async with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(table.delete())
    return engine


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on PostgreSQL, then on SQLite (test ids `postgresql` and `sqlite`), with every table empty."""
    engine = await emptied(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def pg_engine(pg_url: str, sqlite_root: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's PostgreSQL database, with every table empty."""
    engine = await emptied(disposable(pg_url, sqlite_root))
    yield engine
    await engine.dispose()


@pytest.fixture
async def sqlite_engine(sqlite_url: str, sqlite_root: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's SQLite file, with every table empty."""
    engine = await emptied(disposable(sqlite_url, sqlite_root))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (moto) on loopback for this test session."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server
