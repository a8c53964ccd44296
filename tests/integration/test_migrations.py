"""The Alembic migrations: a stairway up and down each revision, repeat-safe, concurrent-safe, and matching
the tables that the code maps."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.migrate import ADVISORY_LOCK_KEY, alembic_config, downgrade, migrate
from infrastructure.persistence.tables import metadata
from tests.integration.persistence_helpers import in_thread

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[2] / "src"
MAPPED_TABLES = set(metadata.tables)


def inspect(url: str, look: Callable[[sa.Connection], object]) -> object:
    async def run() -> object:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(look)
        finally:
            await engine.dispose()

    return in_thread(asyncio.run, run())


def tables(url: str) -> set[str]:
    names = inspect(url, lambda conn: sa.inspect(conn).get_table_names())
    assert isinstance(names, list)
    return set(names) - {"alembic_version"}


def test_every_revision_upgrades_downgrades_and_upgrades_again(empty_database_url: str) -> None:
    revisions = list(reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions())))
    for revision in revisions:
        in_thread(migrate, empty_database_url, revision.revision)
        in_thread(downgrade, empty_database_url, revision.down_revision or "base")
        in_thread(migrate, empty_database_url, revision.revision)

    assert tables(empty_database_url) == MAPPED_TABLES
    in_thread(downgrade, empty_database_url)
    assert tables(empty_database_url) == set()


def test_migrating_again_changes_nothing(empty_database_url: str) -> None:
    in_thread(migrate, empty_database_url)
    in_thread(migrate, empty_database_url)

    assert tables(empty_database_url) == MAPPED_TABLES


def test_the_migrated_schema_matches_the_tables_in_code(empty_database_url: str) -> None:
    in_thread(migrate, empty_database_url)

    differences = inspect(empty_database_url, lambda conn: compare_metadata(MigrationContext.configure(conn), metadata))

    assert differences == []


def test_going_down_to_the_first_revision_keeps_the_jobs_constraints(empty_database_url: str) -> None:
    in_thread(migrate, empty_database_url)
    in_thread(downgrade, empty_database_url, "0001")

    checks = inspect(empty_database_url, lambda conn: sa.inspect(conn).get_check_constraints("jobs"))
    columns = inspect(empty_database_url, lambda conn: sa.inspect(conn).get_columns("jobs"))

    assert isinstance(checks, list)
    assert isinstance(columns, list)
    assert {c["name"] for c in checks} == {"ck_jobs_status", "ck_jobs_progress"}
    assert {"lease_expires_at", "expires_at"}.isdisjoint(c["name"] for c in columns)
    assert tables(empty_database_url) == {"reports", "jobs"}


async def test_processes_that_migrate_postgresql_together_take_turns(empty_pg_url: str) -> None:
    # Processes, not threads: Alembic keeps its migration context in module globals.
    code = "import sys; from infrastructure.persistence.migrate import migrate; migrate(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    engine = create_engine(empty_pg_url)
    try:
        async with engine.connect() as holder:
            await holder.execute(sa.select(sa.func.pg_advisory_lock(ADVISORY_LOCK_KEY)))
            processes = [
                await asyncio.create_subprocess_exec(sys.executable, "-c", code, empty_pg_url, env=env)
                for _ in range(3)
            ]
            await asyncio.sleep(1.5)
            waiting = [p.returncode for p in processes]
            migrated_while_locked = await holder.scalar(sa.text("SELECT to_regclass('jobs') IS NOT NULL"))
            await holder.execute(sa.select(sa.func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
            await holder.commit()
            exit_codes = [await asyncio.wait_for(p.wait(), 30) for p in processes]
    finally:
        await engine.dispose()

    assert (waiting, migrated_while_locked) == ([None, None, None], False)
    assert exit_codes == [0, 0, 0]
