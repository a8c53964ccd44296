"""Job admission on real databases: the unit-of-work admission on PostgreSQL and SQLite, and PostgreSQL's cached
reports with the same statements composed into one round trip. Both must store the job exactly as built, refuse a
report changed since it was read, and hold the per-user limit (the default, or a user's own) exactly under
concurrent requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.job_admission import UnitOfWorkAdmission
from application.ports import JobAdmission
from domain.errors import DuplicateIdempotencyKey
from domain.repositories import Admission
from infrastructure.persistence.admission import PostgresJobAdmission
from infrastructure.persistence.statements import ACTIVE
from infrastructure.persistence.tables import job_owners, jobs
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.conftest import disposable, emptied
from tests.integration.persistence_helpers import T0, a_job, a_key_record, a_report, fields, load_job, store

pytestmark = pytest.mark.integration


def unit_of_work_admission(engine: AsyncEngine) -> UnitOfWorkAdmission:
    return UnitOfWorkAdmission(lambda: SqlAlchemyUnitOfWork(engine))


ADMISSIONS = {
    "postgresql-unit-of-work": ("pg_url", unit_of_work_admission),
    "sqlite-unit-of-work": ("sqlite_url", unit_of_work_admission),
    "postgresql-one-statement": ("pg_url", lambda e: PostgresJobAdmission(e, unit_of_work_admission(e))),
}


@pytest.fixture(params=list(ADMISSIONS))
async def engine_and_admission(
    request: pytest.FixtureRequest, sqlite_root: Path
) -> AsyncIterator[tuple[AsyncEngine, JobAdmission]]:
    url_fixture, build = ADMISSIONS[request.param]
    engine = await emptied(disposable(request.getfixturevalue(url_fixture), sqlite_root))
    yield engine, build(engine)
    await engine.dispose()


@pytest.fixture
def engine(engine_and_admission: tuple[AsyncEngine, JobAdmission]) -> AsyncEngine:
    return engine_and_admission[0]


@pytest.fixture
def admission(engine_and_admission: tuple[AsyncEngine, JobAdmission]) -> JobAdmission:
    return engine_and_admission[1]


@pytest.fixture
async def pg_engine(pg_url: str, sqlite_root: Path) -> AsyncIterator[AsyncEngine]:
    engine = await emptied(disposable(pg_url, sqlite_root))
    yield engine
    await engine.dispose()


async def count_jobs(engine: AsyncEngine, owner: str) -> int:
    """The owner's active jobs; checks that the owner's counter agrees with the jobs that hold a slot."""
    async with SqlAlchemyUnitOfWork(engine) as uow:
        active = (await uow.owners.get(owner)).active_jobs
    async with engine.connect() as conn:
        counter = await conn.scalar(sa.select(job_owners.c.active_jobs).where(job_owners.c.owner_id == owner))
        holding = await conn.scalar(
            sa.select(sa.func.count()).where(jobs.c.owner_id == owner, jobs.c.status.in_(ACTIVE), jobs.c.holds_slot)
        )
    assert (counter or 0) == holding
    return int(active)


async def set_limit(engine: AsyncEngine, owner: str, limit: int | None) -> None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.owners.set_limit(owner, limit)
        await uow.commit()


async def test_an_admitted_job_is_stored_exactly_as_built(engine: AsyncEngine, admission: JobAdmission) -> None:
    report = a_report()
    await store(engine, report)
    job = a_job(report, request_id=None)

    outcome = await admission.admit(job, report=report, default_limit=5)

    assert outcome is Admission.QUEUED
    assert fields(await load_job(engine, job)) == fields(job)


async def test_a_report_updated_or_deleted_since_it_was_read_admits_nothing(
    engine: AsyncEngine, admission: JobAdmission
) -> None:
    report, deleted = a_report(), a_report("Gone")
    await store(engine, report, deleted)
    read = await admission.report(report.id)
    gone = await admission.report(deleted.id)
    assert read is not None
    assert gone is not None
    async with SqlAlchemyUnitOfWork(engine) as uow:
        assert await uow.reports.update(report.with_changes(query="SELECT 2", updated_at=T0.replace(second=59)))
        assert await uow.reports.delete(deleted.id)
        await uow.commit()

    assert await admission.admit(a_job(read), report=read, default_limit=0) is Admission.REPORT_CHANGED
    assert await admission.admit(a_job(gone), report=gone, default_limit=0) is Admission.REPORT_CHANGED
    assert await count_jobs(engine, "user-1") == 0


async def test_the_limit_of_active_jobs_holds_exactly_under_concurrent_admissions(
    engine: AsyncEngine, admission: JobAdmission
) -> None:
    report = a_report()
    await store(engine, report)

    outcomes = await asyncio.gather(
        *(admission.admit(a_job(report), report=report, default_limit=3) for _ in range(12))
    )

    assert sorted(outcome.value for outcome in outcomes) == ["queued"] * 3 + ["too_many_active"] * 9
    assert await count_jobs(engine, "user-1") == 3
    other = a_job(report, owner_id="user-2")
    assert await admission.admit(other, report=report, default_limit=3) is Admission.QUEUED


async def test_a_users_own_limit_replaces_the_default_and_zero_means_no_limit(
    engine: AsyncEngine, admission: JobAdmission
) -> None:
    report = a_report()
    await store(engine, report)
    await set_limit(engine, "service", 0)
    await set_limit(engine, "intern", 1)

    service = [
        await admission.admit(a_job(report, owner_id="service"), report=report, default_limit=2) for _ in range(5)
    ]
    intern = [await admission.admit(a_job(report, owner_id="intern"), report=report, default_limit=2) for _ in range(2)]
    await set_limit(engine, "intern", None)  # back to the default of 2
    again = await admission.admit(a_job(report, owner_id="intern"), report=report, default_limit=2)

    assert service == [Admission.QUEUED] * 5
    assert intern == [Admission.QUEUED, Admission.TOO_MANY_ACTIVE]
    assert again is Admission.QUEUED
    assert (await count_jobs(engine, "service"), await count_jobs(engine, "intern")) == (5, 2)


async def test_a_default_limit_of_zero_admits_without_limit(engine: AsyncEngine, admission: JobAdmission) -> None:
    report = a_report()
    await store(engine, report)

    outcomes = await asyncio.gather(
        *(admission.admit(a_job(report), report=report, default_limit=0) for _ in range(20))
    )

    assert set(outcomes) == {Admission.QUEUED}
    assert await count_jobs(engine, "user-1") == 20


async def test_an_idempotency_key_is_stored_with_its_job_and_a_taken_key_admits_nothing(
    engine: AsyncEngine, admission: JobAdmission
) -> None:
    report = a_report()
    await store(engine, report)
    first, second = a_job(report), a_job(report)

    assert (
        await admission.admit(first, report=report, default_limit=5, idempotency=a_key_record(first))
        is Admission.QUEUED
    )
    with pytest.raises(DuplicateIdempotencyKey):
        await admission.admit(second, report=report, default_limit=5, idempotency=a_key_record(second))

    async with SqlAlchemyUnitOfWork(engine) as uow:
        record = await uow.idempotency.get("user-1", "key-1")
        assert await uow.jobs.get(second.id) is None
    assert record is not None
    assert record.job_id == first.id


async def test_cached_reports_are_served_until_a_fresh_read_replaces_them(pg_engine: AsyncEngine) -> None:
    admission = PostgresJobAdmission(pg_engine, unit_of_work_admission(pg_engine))
    report = a_report("Cached")
    await store(pg_engine, report)
    assert await admission.report(report.id) == report
    changed = report.with_changes(query="SELECT 2", updated_at=T0.replace(second=59))
    async with SqlAlchemyUnitOfWork(pg_engine) as uow:
        assert await uow.reports.update(changed)
        await uow.commit()

    assert await admission.report(report.id) == report  # still the cached one: admit tells it is stale
    assert await admission.report(report.id, fresh=True) == changed
    assert await admission.report(report.id) == changed
    async with SqlAlchemyUnitOfWork(pg_engine) as uow:
        assert await uow.reports.delete(report.id)
        await uow.commit()
    assert await admission.report(report.id, fresh=True) is None
    assert await admission.report(report.id) is None  # the deleted report left the cache


async def test_the_cache_keeps_only_the_most_recently_used_reports(pg_engine: AsyncEngine) -> None:
    admission = PostgresJobAdmission(pg_engine, unit_of_work_admission(pg_engine), capacity=2)
    first, second, third = a_report("One"), a_report("Two"), a_report("Three")
    await store(pg_engine, first, second, third)
    for report in (first, second, first, third):  # `second` is now the least recently used
        await admission.report(report.id)
    async with SqlAlchemyUnitOfWork(pg_engine) as uow:
        for report in (first, second, third):
            assert await uow.reports.delete(report.id)
        await uow.commit()

    assert [await admission.report(r.id) for r in (first, second, third)] == [first, None, third]
