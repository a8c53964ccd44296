"""The SQL unit of work: commit only on request, roll back otherwise, and report an unreachable database."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import StorageUnavailable
from domain.jobs import JobExecutionLog, JobStatus
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import T0, a_job, a_report, load_job, started, store

pytestmark = pytest.mark.integration


async def stored_report_names(engine: AsyncEngine) -> list[str]:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        return [r.name for r in await uow.reports.list()]


async def test_rolls_back_uncommitted_work_by_default(engine: AsyncEngine) -> None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.reports.add(a_report("Never committed"))

    assert await stored_report_names(engine) == []


class Boom(Exception):
    pass


async def add_then_fail(engine: AsyncEngine) -> None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.reports.add(a_report("Half done"))
        raise Boom


async def test_rolls_back_on_error(engine: AsyncEngine) -> None:
    with pytest.raises(Boom):
        await add_then_fail(engine)

    assert await stored_report_names(engine) == []


async def test_keeps_committed_work_and_drops_what_follows_the_commit(engine: AsyncEngine) -> None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.reports.add(a_report("Committed"))
        await uow.commit()
        await uow.reports.add(a_report("After the commit"))

    assert await stored_report_names(engine) == ["Committed"]


async def test_a_committed_job_transition_is_kept(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report, job)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        claimed = await uow.jobs.get(job.id)
        assert claimed is not None
        started(claimed)
        await uow.jobs.update(claimed)
        await uow.commit()

    assert (await load_job(engine, job)).status is JobStatus.RUNNING


async def test_an_unreachable_postgresql_is_storage_unavailable() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/reportgen")
    try:
        with pytest.raises(StorageUnavailable) as caught:
            async with SqlAlchemyUnitOfWork(engine):
                pass
    finally:
        await engine.dispose()
    assert "SELECT" not in str(caught.value)
    assert caught.value.cause == "database"


async def test_an_unopenable_sqlite_file_is_storage_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'a-directory.db'}")
    try:
        with pytest.raises(StorageUnavailable):
            async with SqlAlchemyUnitOfWork(engine) as uow:
                await uow.reports.list()
    finally:
        await engine.dispose()
        await aiosqlite_threads_stopped()


async def aiosqlite_threads_stopped() -> None:
    """aiosqlite stops the worker thread of a connection that failed to open a moment later, from that thread;
    if this test's event loop closed first, the thread's last call would fail into the next test."""
    for _ in range(200):  # at most about two seconds
        if not any(t.is_alive() and t.name.endswith("(_connection_worker_thread)") for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


async def add_after_losing_the_connection(engine: AsyncEngine) -> None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.reports.list()
        async with engine.connect() as admin:
            terminate_others = (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await admin.execute(sa.text(terminate_others))
        await uow.reports.add(a_report())


async def test_a_connection_lost_mid_transaction_is_storage_unavailable(pg_engine: AsyncEngine) -> None:
    with pytest.raises(StorageUnavailable) as caught:
        await add_after_losing_the_connection(pg_engine)

    assert "INSERT" not in str(caught.value)
    assert await stored_report_names(pg_engine) == []


async def test_a_deadlock_is_storage_unavailable(pg_engine: AsyncEngine) -> None:
    report = a_report()
    # Two owners: the jobs' rows are what the transactions fight over, not one owner's counter of active jobs.
    first, second = a_job(report), a_job(report, owner_id="user-2")
    await store(pg_engine, report, first, second)
    both_hold_one = asyncio.Barrier(2)

    async def cancel_in_order(*order: JobExecutionLog) -> None:
        async with SqlAlchemyUnitOfWork(pg_engine) as uow:
            for job in order:
                loaded = await uow.jobs.get(job.id)
                assert loaded is not None
                loaded.cancel(T0)
                await uow.jobs.update(loaded)
                if job is order[0]:
                    await both_hold_one.wait()
            await uow.commit()

    outcomes = await asyncio.gather(
        cancel_in_order(first, second), cancel_in_order(second, first), return_exceptions=True
    )

    assert sum(isinstance(o, StorageUnavailable) for o in outcomes) == 1
    assert sum(o is None for o in outcomes) == 1


async def test_a_pool_with_every_connection_busy_is_storage_unavailable_for_that_cause(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with SqlAlchemyUnitOfWork(engine):  # holds the pool's one connection
            with pytest.raises(StorageUnavailable) as busy:
                async with SqlAlchemyUnitOfWork(engine):
                    pass
    finally:
        await engine.dispose()

    assert busy.value.cause == "database_pool"
