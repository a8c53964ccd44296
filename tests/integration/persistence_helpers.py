"""Builders and helpers shared by the persistence integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog
from domain.reports import ParameterType, ReportConfiguration, ReportParameter
from domain.repositories import Admission
from infrastructure.persistence.tables import job_owners
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork

T = TypeVar("T")


def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run blocking setup (which may call asyncio.run) off the thread that pytest-asyncio's loops live on."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


def run_async(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return in_thread(lambda: asyncio.run(coroutine()))


T0 = datetime(2026, 11, 28, 10, 15, 30, 123456, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def fields(entity: object) -> dict[str, Any]:
    """What the entity holds, less the events it has not yet handed over (a store keeps rows, not events)."""
    fields = dataclasses.fields(entity)  # type: ignore[arg-type]
    return {f.name: getattr(entity, f.name) for f in fields if f.name != "events"}


def a_report(name: str = "Sales", **changes: Any) -> ReportConfiguration:
    report = ReportConfiguration(
        id=uuid4(),
        name=name,
        description="Revenue per region",
        query="SELECT region FROM sales WHERE (:region IS NULL OR region = :region) AND day >= :since",
        parameters=(
            ReportParameter("region", ParameterType.STRING),
            ReportParameter("since", ParameterType.DATE, required=True, default="2026-01-01"),
            ReportParameter("top", ParameterType.INTEGER, default=10),
            ReportParameter("ratio", ParameterType.NUMBER, default=0.5),
            ReportParameter("exact", ParameterType.BOOLEAN, default=False),
        ),
        formats=("json", "csv"),
        created_at=T0,
        updated_at=T0,
    )
    return report.with_changes(**changes)


def a_job(report: ReportConfiguration, *, created_at: datetime = T0, **changes: Any) -> JobExecutionLog:
    job = JobExecutionLog(
        id=uuid4(),
        report_id=report.id,
        owner_id="user-1",
        report_name=report.name,
        query=report.query,
        format="csv",
        parameters={"region": None, "since": "2026-01-01", "top": 10, "ratio": 0.5, "exact": True},
        parameter_types={p.name: p.type for p in report.parameters},
        created_at=created_at,
        request_id="req-1",
    )
    for name, value in changes.items():
        setattr(job, name, value)
    return job


def started(job: JobExecutionLog, at: datetime = T0) -> JobExecutionLog:
    """`job`, taken by a worker at `at` with a lease of LEASE."""
    job.start(at, at + LEASE)
    return job


def a_key_record(job: JobExecutionLog, key: str = "key-1", *, created_at: datetime = T0) -> IdempotencyRecord:
    return IdempotencyRecord(owner_id=job.owner_id, key=key, fingerprint="f" * 64, job_id=job.id, created_at=created_at)


async def store(engine: AsyncEngine, *entities: ReportConfiguration | JobExecutionLog) -> None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        for entity in entities:
            if isinstance(entity, ReportConfiguration):
                await uow.reports.add(entity)
            else:
                await uow.jobs.add(entity)
        await uow.commit()


async def store_counted(engine: AsyncEngine, *jobs: JobExecutionLog, limit: int = 100) -> None:
    """Store jobs of owners who have a limit, so that each active one holds a slot of its owner's counter."""
    async with SqlAlchemyUnitOfWork(engine) as uow:
        for job in jobs:
            assert await uow.jobs.add(job, default_limit=limit) is Admission.QUEUED
        await uow.commit()


async def slots_held(engine: AsyncEngine, owner: str = "user-1") -> int:
    """The owner's counter of active jobs that hold a slot."""
    async with engine.connect() as conn:
        counter = await conn.scalar(sa.select(job_owners.c.active_jobs).where(job_owners.c.owner_id == owner))
    return int(counter or 0)


async def load_job(engine: AsyncEngine, job: JobExecutionLog) -> JobExecutionLog:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        loaded = await uow.jobs.get(job.id)
    assert loaded is not None
    return loaded


async def logged_statements(engine: AsyncEngine) -> list[str]:
    """A list that fills with every statement that the engine's pooled connection sends from now on (asyncpg logs
    them soon after, not during, each one). Give the engine `pool_size=1`, so that it is the one connection."""
    sent: list[str] = []
    pooled = await engine.raw_connection()
    driver = pooled.driver_connection
    assert driver is not None
    driver.add_query_logger(lambda logged: sent.append(logged.query))
    await greenlet_spawn(pooled.close)
    return sent
