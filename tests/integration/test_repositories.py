"""The SQL repositories on PostgreSQL and SQLite: round trips, soft delete, optimistic locking, listings.

Leases, heartbeats and the active-job count are in test_leases_and_limits.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta, timezone
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import ConcurrentUpdate, InvalidInput
from domain.jobs import ArtifactRef, JobError, JobStatus
from domain.reports import ParameterType
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import T0, a_job, a_report, fields, load_job, started, store

pytestmark = pytest.mark.integration


async def test_a_report_comes_back_with_every_field(engine: AsyncEngine) -> None:
    report = a_report(
        delivery_target="EMAIL", async_enabled=False, created_at=T0.astimezone(timezone(timedelta(hours=2)))
    )
    await store(engine, report)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        loaded = await uow.reports.get(report.id)

    assert loaded is not None
    assert fields(loaded) == fields(report)
    assert loaded.created_at is not None
    assert loaded.created_at.utcoffset() == timedelta(0)


async def test_reports_are_listed_by_name_without_deleted_ones(engine: AsyncEngine) -> None:
    b, a, gone = a_report("B"), a_report("A"), a_report("C")
    await store(engine, b, a, gone)
    async with SqlAlchemyUnitOfWork(engine) as uow:
        assert await uow.reports.delete(gone.id)
        await uow.commit()

    async with SqlAlchemyUnitOfWork(engine) as uow:
        assert [r.name for r in await uow.reports.list()] == ["A", "B"]


async def test_deleting_a_report_is_soft_and_its_jobs_stay(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report, job)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        assert await uow.reports.delete(report.id) is True
        assert await uow.reports.delete(report.id) is False
        assert await uow.reports.get(report.id) is None
        assert await uow.reports.update(report.with_changes(name="Again")) is False
        await uow.commit()

    assert (await load_job(engine, job)).report_id == report.id


async def test_updating_a_report_overwrites_its_definition(engine: AsyncEngine) -> None:
    report = a_report()
    await store(engine, report)
    changed = report.with_changes(name="Renamed", formats=("csv",), updated_at=T0 + timedelta(hours=1))

    async with SqlAlchemyUnitOfWork(engine) as uow:
        assert await uow.reports.update(changed) is True
        assert await uow.reports.update(a_report()) is False
        await uow.commit()

    async with SqlAlchemyUnitOfWork(engine) as uow:
        loaded = await uow.reports.get(report.id)
    assert loaded is not None
    assert fields(loaded) == fields(changed)


async def test_a_job_comes_back_with_every_field(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(
        report,
        status=JobStatus.SUCCEEDED,
        progress=100,
        attempts=2,
        started_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=2),
        error=JobError("REPORT_TIMEOUT", "first attempt timed out"),
        artifact=ArtifactRef(f"{uuid4()}/attempt-2.csv", 5_000_000_000, "ab" * 32),
        lease_expires_at=T0 + timedelta(seconds=31),
        expires_at=T0 + timedelta(days=1),
        version=3,
    )
    await store(engine, report, job)

    loaded = await load_job(engine, job)

    assert fields(loaded) == fields(job)
    times = (loaded.created_at, loaded.started_at, loaded.finished_at, loaded.lease_expires_at, loaded.expires_at)
    assert all(t is not None and t.tzinfo is UTC for t in times)
    assert isinstance(loaded.parameters["ratio"], float)
    assert isinstance(loaded.parameter_types["since"], ParameterType)


async def test_updating_a_job_bumps_its_version_and_refuses_a_stale_copy(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report, job)
    stale = await load_job(engine, job)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        started(job)
        await uow.jobs.update(job)
        await uow.commit()
    stale.cancel(T0)

    assert job.version == 1
    async with SqlAlchemyUnitOfWork(engine) as uow:
        with pytest.raises(ConcurrentUpdate):
            await uow.jobs.update(stale)
    assert stale.version == 0
    assert fields(await load_job(engine, job)) == fields(job)


async def test_of_two_concurrent_claims_exactly_one_wins(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report, job)
    both_loaded = asyncio.Barrier(2)

    async def claim() -> bool:
        async with SqlAlchemyUnitOfWork(engine) as uow:
            mine = await uow.jobs.get(job.id)
            assert mine is not None
            await both_loaded.wait()
            started(mine)
            try:
                await uow.jobs.update(mine)
            except ConcurrentUpdate:
                return False
            await uow.commit()
            return True

    outcomes = await asyncio.gather(claim(), claim())

    assert sorted(outcomes) == [False, True]
    stored = await load_job(engine, job)
    assert (stored.status, stored.attempts, stored.version) == (JobStatus.RUNNING, 1, 1)


async def test_unfinished_jobs_are_listed_oldest_first(engine: AsyncEngine) -> None:
    report = a_report()
    jobs = [a_job(report, created_at=T0 + timedelta(minutes=i)) for i in range(4)]
    jobs[0].status, jobs[3].status = JobStatus.SUCCEEDED, JobStatus.RUNNING
    await store(engine, report, *reversed(jobs))

    async with SqlAlchemyUnitOfWork(engine) as uow:
        unfinished = await uow.jobs.list_unfinished(limit=10)
        first = await uow.jobs.list_unfinished(limit=1)

    assert [j.id for j in unfinished] == [jobs[1].id, jobs[2].id, jobs[3].id]
    assert [j.id for j in first] == [jobs[1].id]


async def test_a_value_postgresql_refuses_is_invalid_input_not_a_server_error(pg_url: str) -> None:
    """The safety net under the API's own checks: text PostgreSQL cannot hold is the client's error (422)."""
    engine = create_engine(pg_url)
    try:
        with pytest.raises(InvalidInput) as refused:
            await store(engine, a_report(name="Sa\x00les"))
    finally:
        await engine.dispose()

    [error] = refused.value.errors
    assert error.field == "body"
    assert error.message.startswith("a value could not be stored (SQLSTATE 22")
