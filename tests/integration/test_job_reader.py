"""The job reader of the polling paths: committed jobs only, one autocommit SELECT, StorageUnavailable when down."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import StorageUnavailable
from application.ports import JobReader
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.job_reader import PostgresJobReader, SqlAlchemyJobReader
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import a_job, a_report, fields, logged_statements, started, store

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
