"""Schema migrations, run in code: no alembic.ini, and the same from the source tree or an installed package."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import NullPool

from infrastructure.persistence.engine import create_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant shared by every reportgen process: they serialize their migrations on this advisory lock.
ADVISORY_LOCK_KEY = 0x7265706F727467

AlembicCommand = Callable[[Config], None]


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for our migrations; with `url`, the `alembic` commands can connect by themselves."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision`. Safe to repeat; on PostgreSQL, processes that start together
    take turns (an advisory lock). Synchronous: from async code, call it through `asyncio.to_thread`."""
    asyncio.run(_run(url, partial(command.upgrade, revision=revision)))


def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at `url` to `revision` (by default: drop every table the migrations created)."""
    asyncio.run(_run(url, partial(command.downgrade, revision=revision)))


async def _run(url: str, alembic_command: AlembicCommand) -> None:
    # NullPool: the connection really closes at the end, which also releases the session-level advisory lock.
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await _lock(conn)
            await conn.run_sync(_with_connection, alembic_command)
            await conn.commit()
    finally:
        await engine.dispose()


async def _lock(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_lock(ADVISORY_LOCK_KEY)))
        await conn.commit()


def _with_connection(connection: Connection, alembic_command: AlembicCommand) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    alembic_command(config)
