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


def run_sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run statements in one transaction, committed; the rows of the last one."""

    async def run() -> list[tuple[object, ...]]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                result = None
                for statement in statements:
                    result = await conn.execute(sa.text(statement))
                return [tuple(row) for row in result] if result is not None and result.returns_rows else []
        finally:
            await engine.dispose()

    return in_thread(asyncio.run, run())


_FAILED_JOBS = [
    ('The report query failed: column "salary" does not exist', 'column "salary" does not exist'),
    ("The report query failed: the query tried to change data; report queries must be read-only", None),
    ("The report query failed: A value is required for bind parameter 'region'", None),
]


def test_0005_moves_the_database_message_of_failed_jobs_to_the_admins_detail(empty_database_url: str) -> None:
    in_thread(migrate, empty_database_url, "0004")
    report = "00000000-0000-0000-0000-000000000001"
    rows = ", ".join(
        f"('00000000-0000-0000-0000-00000000001{i}', '{report}', 'alice', 'r', 'SELECT 1', 'csv', '{{}}', '{{}}',"
        f" 'Failed', 0, 1, '2026-12-01 00:00:00', 'REPORT_QUERY_FAILED', '{message.replace(chr(39), chr(39) * 2)}', 1)"
        for i, (message, _) in enumerate(_FAILED_JOBS)
    )
    run_sql(
        empty_database_url,
        "INSERT INTO reports (id, name, description, query, parameters, formats, delivery_target, async_enabled,"
        f" created_at, updated_at) VALUES ('{report}', 'r', '', 'SELECT 1', '[]', '[\"csv\"]', 'API_RESPONSE', true,"
        " '2026-12-01 00:00:00', '2026-12-01 00:00:00')",
        "INSERT INTO jobs (id, report_id, owner_id, report_name, query, format, parameters, parameter_types, status,"
        f" progress, attempts, created_at, error_code, error_message, version) VALUES {rows}",
    )

    in_thread(migrate, empty_database_url, "0005")
    upgraded = run_sql(empty_database_url, "SELECT error_message, error_detail FROM jobs ORDER BY id")
    in_thread(downgrade, empty_database_url, "0004")
    downgraded = run_sql(empty_database_url, "SELECT error_message FROM jobs ORDER BY id")

    advice = "The report query failed: an administrator can see the database's message on this job"
    assert upgraded == [(advice if detail else message, detail) for message, detail in _FAILED_JOBS], (
        "the database's message leaves what the owner sees; the messages that were safe stay"
    )
    assert downgraded == [(message,) for message, _ in _FAILED_JOBS]
