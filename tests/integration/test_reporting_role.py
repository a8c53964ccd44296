"""The role that reports run as, on real PostgreSQL: what `inspect` finds it may do, the role that `create_role`
makes (it reads the reporting tables and none of reportgen's), and the start-up guard that refuses a privileged one."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bootstrap.container import build_container
from bootstrap.reporting import PrivilegedReports, guard_reports
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.reporting_role import create_role, inspect
from settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def owner(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """The service's engine, as the role that owns reportgen's tables (here a superuser), with a reporting table."""
    engine = create_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS sales_facts (region text, amount int)"))
        await conn.execute(sa.text("INSERT INTO sales_facts VALUES ('EU', 3)"))
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE sales_facts"))
        await engine.dispose()


@pytest.fixture
async def roles(pg_url: str, owner: AsyncEngine) -> AsyncIterator[Callable[[], str]]:
    """Names for roles of this test; each is dropped (with its grants) afterwards."""
    made: list[str] = []

    def new() -> str:
        made.append(f"reportgen_test_reports_{secrets.token_hex(4)}")
        return made[-1]

    yield new
    async with owner.begin() as conn:
        for role in made:
            exists = await conn.scalar(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": role})
            if exists:
                await conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
                await conn.execute(sa.text(f'DROP ROLE "{role}"'))


def as_role(pg_url: str, role: str) -> AsyncEngine:
    return create_engine(make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False))


async def test_the_service_superuser_is_found_privileged_and_able_to_read_reportgens_tables(
    owner: AsyncEngine,
) -> None:
    report = await inspect(owner, owner)

    assert report is not None
    assert report.privileged
    [superuser, readable] = [p for p in report.problems if "superuser" in p or "reportgen's own tables" in p]
    assert "read and write files on the database host" in superuser
    assert all(table in readable for table in ("jobs", "idempotency_keys", "job_owners", "reports"))


async def test_a_role_made_by_create_role_reads_the_reporting_tables_and_none_of_reportgens(
    pg_url: str, owner: AsyncEngine, roles: Callable[[], str]
) -> None:
    role = roles()
    await create_role(owner, role, ["public"])
    await create_role(owner, role, ["public"])  # safe to run again
    reporting = as_role(pg_url, role)
    try:
        report = await inspect(reporting, owner)
        async with reporting.connect() as conn:
            amount = await conn.scalar(sa.text("SELECT sum(amount) FROM sales_facts"))
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                await conn.execute(sa.text("SELECT count(*) FROM jobs"))
    finally:
        await reporting.dispose()

    assert report is not None
    assert (report.role, report.problems) == (role, ())
    assert amount == 3


@pytest.mark.parametrize("predefined", ["pg_read_server_files", "pg_signal_backend"])
async def test_a_role_that_holds_a_predefined_role_reaching_past_the_database_is_privileged(
    pg_url: str, owner: AsyncEngine, roles: Callable[[], str], predefined: str
) -> None:
    role = roles()
    await create_role(owner, role, ["public"])
    async with owner.begin() as conn:
        await conn.execute(sa.text(f'GRANT {predefined} TO "{role}"'))
    reporting = as_role(pg_url, role)
    try:
        report = await inspect(reporting, owner)
    finally:
        await reporting.dispose()

    assert report is not None
    assert report.problems == (f"{role} is a member of {predefined}",)


async def test_a_role_granted_one_of_reportgens_tables_is_privileged(
    pg_url: str, owner: AsyncEngine, roles: Callable[[], str]
) -> None:
    role = roles()
    await create_role(owner, role, ["public"])
    async with owner.begin() as conn:
        await conn.execute(sa.text(f'GRANT SELECT ON idempotency_keys TO "{role}"'))
    reporting = as_role(pg_url, role)
    try:
        report = await inspect(reporting, owner)
    finally:
        await reporting.dispose()

    assert report is not None
    assert report.problems == (f"{role} can read reportgen's own tables (idempotency_keys)",)


async def test_the_guard_refuses_privileged_reports_unless_allowed_and_then_warns(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bootstrap.reporting")
    refused = build_container(Settings(database_url=pg_url, var_dir=tmp_path), registry=CollectorRegistry())
    allowed = build_container(
        Settings(database_url=pg_url, var_dir=tmp_path, allow_privileged_reports=True), registry=CollectorRegistry()
    )
    try:
        with pytest.raises(PrivilegedReports, match=r"^refusing to run reports: .* is a superuser") as refusal:
            await guard_reports(refused)
        report = await guard_reports(allowed)
    finally:
        await refused.aclose()
        await allowed.aclose()

    assert "\n" not in str(refusal.value), "one line"
    assert "REPORTGEN_ALLOW_PRIVILEGED_REPORTS=true" in str(refusal.value)
    assert report is not None
    assert report.privileged
    [warning] = [r.getMessage() for r in caplog.records if r.name == "bootstrap.reporting"]
    assert warning.startswith("reports run with privileges (REPORTGEN_ALLOW_PRIVILEGED_REPORTS=true)")


async def test_on_sqlite_there_is_no_role_to_check(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        assert await inspect(engine, engine) is None
    finally:
        await engine.dispose()
