"""The job reader of the polling paths: committed jobs only, one autocommit SELECT, StorageUnavailable when down."""

from __future__ import annotations

from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import StorageUnavailable
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.job_reader import SqlAlchemyJobReader
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import a_job, a_report, fields, started, store

pytestmark = pytest.mark.integration


async def test_reads_a_committed_job_with_every_field(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    started(job)
    await store(engine, report, job)

    loaded = await SqlAlchemyJobReader(engine).get(job.id)

    assert loaded is not None
    assert fields(loaded) == fields(job)


async def test_an_unknown_job_is_none(engine: AsyncEngine) -> None:
    assert await SqlAlchemyJobReader(engine).get(uuid4()) is None


async def test_does_not_see_uncommitted_jobs(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report)
    reader = SqlAlchemyJobReader(engine)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.jobs.add(job)
        assert await reader.get(job.id) is None


async def test_reads_outside_any_transaction(pg_engine: AsyncEngine) -> None:
    in_transaction: list[bool] = []

    def probe(conn: sa.Connection, *_: object) -> None:
        in_transaction.append(conn.connection.driver_connection.is_in_transaction())  # type: ignore[union-attr]

    sa.event.listen(pg_engine.sync_engine, "after_cursor_execute", probe)
    await SqlAlchemyJobReader(pg_engine).get(uuid4())
    async with SqlAlchemyUnitOfWork(pg_engine) as uow:
        await uow.jobs.get(uuid4())  # the probe's control: a unit of work does run in a transaction

    assert in_transaction == [False, True]


async def test_an_unreachable_database_is_storage_unavailable() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/reportgen")
    try:
        with pytest.raises(StorageUnavailable):
            await SqlAlchemyJobReader(engine).get(uuid4())
    finally:
        await engine.dispose()
