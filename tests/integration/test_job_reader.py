"""The job reader of the polling paths: committed jobs only, one autocommit SELECT, StorageUnavailable when down."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import StorageUnavailable
from application.ports import JobPosition, JobReader, JobSelection
from domain.jobs import JobStatus
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.job_reader import PostgresJobReader, SqlAlchemyJobReader
from infrastructure.persistence.statements import list_jobs
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import T0, a_job, a_report, fields, logged_statements, started, store

pytestmark = pytest.mark.integration


def reader_for(engine: AsyncEngine) -> JobReader:
    """The reader the composition root picks for the engine's database."""
    return PostgresJobReader(engine) if engine.dialect.name == "postgresql" else SqlAlchemyJobReader(engine)


async def test_reads_a_committed_job_with_every_field(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    started(job)
    await store(engine, report, job)

    loaded = await reader_for(engine).get(job.id)

    assert loaded is not None
    assert fields(loaded) == fields(job)


async def test_the_portable_reader_reads_postgresql_too(pg_engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(pg_engine, report, job)

    loaded = await SqlAlchemyJobReader(pg_engine).get(job.id)

    assert loaded is not None
    assert fields(loaded) == fields(job)


async def test_an_unknown_job_is_none(engine: AsyncEngine) -> None:
    assert await reader_for(engine).get(uuid4()) is None


async def test_does_not_see_uncommitted_jobs(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report)
    reader = reader_for(engine)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.jobs.add(job)
        assert await reader.get(job.id) is None


async def test_reads_with_one_statement_and_no_transaction_round_trips(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)  # one connection: the one the logger watches
    try:
        sent = await logged_statements(engine)

        await PostgresJobReader(engine).get(uuid4())
        await asyncio.sleep(0.01)  # asyncpg calls query loggers soon after, not during, the query
        reads = sent[:]
        async with SqlAlchemyUnitOfWork(engine) as uow:
            await uow.jobs.get(uuid4())  # the probe's control: a unit of work does run in a transaction
        await asyncio.sleep(0.01)
    finally:
        await engine.dispose()

    assert [query.split()[0] for query in reads] == ["SELECT"]
    assert any(query.startswith("BEGIN") for query in sent[len(reads) :])


async def test_an_unreachable_database_is_storage_unavailable() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/reportgen")
    try:
        with pytest.raises(StorageUnavailable):
            await PostgresJobReader(engine).get(uuid4())
    finally:
        await engine.dispose()


async def test_a_list_pages_one_owners_jobs_newest_first_by_time_then_id(engine: AsyncEngine) -> None:
    report = a_report()
    ticks = [T0 + timedelta(microseconds=n // 2) for n in range(9)]  # pairs created at the same microsecond
    mine = [a_job(report, created_at=tick) for tick in ticks]
    others = [a_job(report, created_at=T0, owner_id="user-2")]
    started(mine[0])
    await store(engine, report, *mine, *others)
    reader = reader_for(engine)
    expected = [job.id for job in sorted(mine, key=lambda job: (job.created_at, job.id), reverse=True)]

    seen, after = [], None
    while True:
        page = await reader.list(JobSelection(owner_id="user-1"), 4, after)
        seen += [job.id for job in page]
        if len(page) < 4:
            break
        after = JobPosition(page[-1].created_at, page[-1].id)

    assert seen == expected
    running = await reader.list(JobSelection(owner_id="user-1", statuses=frozenset({JobStatus.RUNNING})), 10)
    assert [job.id for job in running] == [mine[0].id]
    window = JobSelection(created_after=ticks[1], created_before=ticks[6])
    assert {job.id for job in await reader.list(window, 20)} == {
        job.id for job in mine if ticks[1] < job.created_at < ticks[6]
    }


async def test_one_owners_list_uses_its_index_on_postgresql(pg_engine: AsyncEngine) -> None:
    report = a_report()
    jobs = [a_job(report, created_at=T0 + timedelta(seconds=n), owner_id=f"user-{n % 50}") for n in range(2000)]
    await store(pg_engine, report, *jobs)
    statement = list_jobs(JobSelection(owner_id="user-7"), 20, JobPosition(T0 + timedelta(seconds=1000), uuid4()))
    compiled = statement.compile(pg_engine, compile_kwargs={"literal_binds": True})

    async with pg_engine.connect() as conn:
        await conn.exec_driver_sql("ANALYZE jobs")
        # The table is small: make the planner show whether the index alone can serve the filter and the order.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            await conn.exec_driver_sql(f"SET {setting} = off")
        plan = "\n".join(row[0] for row in await conn.exec_driver_sql(f"EXPLAIN {compiled}"))

    assert "Index Scan Backward using ix_jobs_owner_id_created_at_id" in plan, plan
    assert "Sort" not in plan, plan
    assert "ROW(created_at, id) <" in plan.split("Index Cond:")[1], "the cursor is an index condition, not a filter"
