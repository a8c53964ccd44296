"""The webhook outbox on the job rows, on PostgreSQL and SQLite: the terminal save writes the delivery's schedule in
the same UPDATE, claims take what is due and hold it, records are guarded by the version."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.callbacks import Callback, CallbackStatus
from domain.errors import ConcurrentUpdate
from domain.jobs import ArtifactRef, JobExecutionLog
from infrastructure.persistence.callbacks import SqlAlchemyCallbackOutbox
from infrastructure.persistence.job_ledger import PostgresJobLedger
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import T0, a_job, a_report, fields, load_job, started, store

pytestmark = pytest.mark.integration
HOLD = timedelta(seconds=60)


def with_callback(job: JobExecutionLog) -> JobExecutionLog:
    job.callback = Callback(url="https://receiver.example/in?a=1", status_url=f"https://api.example/jobs/{job.id}")
    return job


async def ended_jobs(engine: AsyncEngine, count: int, *, at: timedelta = timedelta(0)) -> list[JobExecutionLog]:
    """`count` jobs with a callback, succeeded at T0 + `at` (their deliveries due then), saved as a worker would."""
    report = a_report()
    jobs = [started(with_callback(a_job(report))) for _ in range(count)]
    await store(engine, report, *jobs)
    async with SqlAlchemyUnitOfWork(engine) as uow:
        for job in jobs:
            job.succeed(T0 + at, ArtifactRef(f"{job.id}/a", 3, "0" * 64), expires_at=T0 + timedelta(days=1))
            await uow.jobs.update(job)
        await uow.commit()
    return jobs


async def test_the_terminal_save_stores_the_callback_due_at_once(engine: AsyncEngine) -> None:
    [job] = await ended_jobs(engine, 1)

    loaded = await load_job(engine, job)

    assert fields(loaded) == fields(job)
    assert loaded.callback == Callback(
        url="https://receiver.example/in?a=1",
        status_url=f"https://api.example/jobs/{job.id}",
        status=CallbackStatus.PENDING,
        next_attempt_at=T0,
    )


async def test_the_postgres_ledger_saves_the_callback_with_the_terminal_status(pg_engine: AsyncEngine) -> None:
    report = a_report()
    job = started(with_callback(a_job(report)))
    await store(pg_engine, report, job)

    job.fail(T0, "REPORT_QUERY_FAILED", "bad")
    await PostgresJobLedger(pg_engine).save(job)

    loaded = await load_job(pg_engine, job)
    assert loaded.callback is not None
    assert (loaded.callback.status, loaded.callback.next_attempt_at) == (CallbackStatus.PENDING, T0)


async def test_a_claim_takes_the_due_deliveries_only_and_holds_them(engine: AsyncEngine) -> None:
    due = await ended_jobs(engine, 2)
    [later] = await ended_jobs(engine, 1, at=timedelta(seconds=30))
    report = a_report()
    waiting, without = with_callback(a_job(report)), a_job(report)
    await store(engine, report, waiting, without)
    outbox = SqlAlchemyCallbackOutbox(engine)

    claimed = await outbox.claim_due(T0, T0 + HOLD, 10)
    again = await outbox.claim_due(T0 + timedelta(seconds=30), T0 + timedelta(seconds=30) + HOLD, 10)
    after_hold = await outbox.claim_due(T0 + HOLD, T0 + 2 * HOLD, 10)

    assert {job.id for job in claimed} == {job.id for job in due}
    assert [job.id for job in again] == [later.id]
    assert {job.id for job in after_hold} == {job.id for job in due}  # their worker was lost: taken again
    for job in claimed:
        assert job.callback is not None
        assert job.callback.next_attempt_at == T0 + HOLD
        assert job.version == (await load_job(engine, job)).version - 1  # claimed again since


async def test_a_claim_takes_at_most_the_limit_longest_due_first(engine: AsyncEngine) -> None:
    first = await ended_jobs(engine, 1)
    await ended_jobs(engine, 2, at=timedelta(seconds=1))

    claimed = await SqlAlchemyCallbackOutbox(engine).claim_due(T0 + timedelta(seconds=5), T0 + HOLD, 1)

    assert [job.id for job in claimed] == [first[0].id]


async def test_a_record_is_guarded_by_the_version_of_the_claim(engine: AsyncEngine) -> None:
    await ended_jobs(engine, 1)
    outbox = SqlAlchemyCallbackOutbox(engine)
    [claimed] = await outbox.claim_due(T0, T0 + HOLD, 10)
    [reclaimed] = await outbox.claim_due(T0 + HOLD, T0 + 2 * HOLD, 10)
    assert claimed.callback is not None
    assert reclaimed.callback is not None

    claimed.callback = claimed.callback.delivered()
    with pytest.raises(ConcurrentUpdate):
        await outbox.record(claimed)
    reclaimed.callback = reclaimed.callback.retry("the receiver answered 500", T0 + 2 * HOLD)
    await outbox.record(reclaimed)

    loaded = await load_job(engine, reclaimed)
    assert fields(loaded) == fields(reclaimed)
    assert loaded.callback is not None
    assert (loaded.callback.attempts, loaded.callback.last_error) == (1, "the receiver answered 500")
    assert await outbox.claim_due(T0 + HOLD, T0 + 3 * HOLD, 10) == []


async def test_concurrent_claims_on_postgresql_never_take_the_same_delivery(pg_engine: AsyncEngine) -> None:
    jobs = await ended_jobs(pg_engine, 12)
    outboxes = [SqlAlchemyCallbackOutbox(pg_engine) for _ in range(4)]

    claims = await asyncio.gather(*(outbox.claim_due(T0, T0 + HOLD, 5) for outbox in outboxes))

    taken = [job.id for claim in claims for job in claim]
    assert len(taken) == len(set(taken)) == len(jobs)
