"""Leases and limits on PostgreSQL and SQLite: heartbeats of the attempt that holds a job, the per-user counter of
active jobs (kept by the transitions that change it; concurrent admissions of one user take turns on it), and the
jobs whose results have expired."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import ConcurrentUpdate
from domain.jobs import ArtifactRef, JobExecutionLog, JobStatus
from domain.repositories import Admission
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import (
    LEASE,
    T0,
    a_job,
    a_report,
    load_job,
    slots_held,
    started,
    store,
    store_counted,
)

pytestmark = pytest.mark.integration


async def beat(engine: AsyncEngine, job: JobExecutionLog) -> bool:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        alive = await uow.jobs.heartbeat(job)
        await uow.commit()
    return alive


async def save(engine: AsyncEngine, job: JobExecutionLog) -> None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.jobs.update(job)
        await uow.commit()


async def a_running_job(engine: AsyncEngine) -> JobExecutionLog:
    report = a_report()
    job = started(a_job(report))
    await store(engine, report, job)
    return job


async def test_a_heartbeat_renews_the_lease_and_raises_progress_without_a_new_version(engine: AsyncEngine) -> None:
    job = await a_running_job(engine)
    job.renew_lease(T0 + 2 * LEASE)
    job.report_progress(40)

    assert await beat(engine, job) is True

    stored = await load_job(engine, job)
    assert (stored.lease_expires_at, stored.progress, stored.version) == (T0 + 2 * LEASE, 40, 0)


async def test_progress_never_falls_through_a_heartbeat_but_the_lease_is_still_renewed(engine: AsyncEngine) -> None:
    job = await a_running_job(engine)
    job.report_progress(60)
    assert await beat(engine, job)
    late = await load_job(engine, job)
    late.progress = 20  # a heartbeat that was sent before the one above, and arrives after it
    late.renew_lease(T0 + 3 * LEASE)

    assert await beat(engine, late) is True

    stored = await load_job(engine, job)
    assert (stored.progress, stored.lease_expires_at) == (60, T0 + 3 * LEASE)


async def test_a_heartbeat_of_a_cancelled_job_is_refused_and_changes_nothing(engine: AsyncEngine) -> None:
    job = await a_running_job(engine)
    canceller = await load_job(engine, job)
    canceller.cancel(T0 + timedelta(seconds=5))
    await save(engine, canceller)
    job.renew_lease(T0 + 2 * LEASE)
    job.report_progress(50)

    assert await beat(engine, job) is False

    stored = await load_job(engine, job)
    assert (stored.status, stored.progress, stored.lease_expires_at, stored.version) == (
        JobStatus.CANCELLED,
        0,
        None,
        1,
    )


async def test_a_heartbeat_of_an_earlier_attempt_is_refused_once_another_worker_took_the_job(
    engine: AsyncEngine,
) -> None:
    job = await a_running_job(engine)
    takeover = await load_job(engine, job)
    takeover.requeue()
    started(takeover, at=T0 + 2 * LEASE)  # the lease of attempt 1 expired; another worker runs attempt 2
    await save(engine, takeover)
    job.renew_lease(T0 + 5 * LEASE)
    job.report_progress(90)

    assert await beat(engine, job) is False

    stored = await load_job(engine, job)
    assert (stored.attempts, stored.lease_expires_at, stored.progress) == (2, T0 + 3 * LEASE, 0)


async def test_a_heartbeat_of_a_queued_job_is_refused(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report, job)

    assert await beat(engine, job) is False


async def active_jobs(engine: AsyncEngine, owner: str = "user-1") -> int:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        return (await uow.owners.get(owner)).active_jobs


async def test_only_the_queued_and_running_jobs_of_that_user_are_active(engine: AsyncEngine) -> None:
    report = a_report()
    queued, running = a_job(report), started(a_job(report))
    finished = [a_job(report, status=status) for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)]
    someone_elses = a_job(report, owner_id="user-2")
    await store(engine, report, queued, running, *finished, someone_elses)

    counts = [await active_jobs(engine, owner) for owner in ("user-1", "user-2", "user-3")]

    assert counts == [2, 1, 0]


async def test_a_job_gives_its_slot_back_once_when_it_finishes_and_not_when_it_is_handed_back(
    engine: AsyncEngine,
) -> None:
    report = a_report()
    job, cancelled = a_job(report), a_job(report)
    await store(engine, report)
    await store_counted(engine, job, cancelled)
    cancelled.cancel(T0)
    await save(engine, cancelled)
    counts = [await slots_held(engine)]

    for hand_back in (False, True, False):  # started, handed back to the queue, started again
        if hand_back:
            job.requeue()
        else:
            job.start(T0, T0 + LEASE)
        await save(engine, job)
        counts.append(await slots_held(engine))
    job.succeed(T0, ArtifactRef(job.artifact_key(), 1, "ab" * 32))
    await save(engine, job)
    counts.append(await slots_held(engine))
    job.discard_artifact()  # a later save of a finished job changes the count no more
    await save(engine, job)
    counts.append(await slots_held(engine))

    assert counts == [1, 1, 1, 1, 0, 0]


async def test_a_job_admitted_without_a_limit_gives_back_nothing(engine: AsyncEngine) -> None:
    report = a_report()
    unlimited, counted = a_job(report), a_job(report)
    await store(engine, report, unlimited)  # no limit: no slot
    await store_counted(engine, counted)

    unlimited.cancel(T0)
    await save(engine, unlimited)

    assert await slots_held(engine) == 1


async def test_a_save_that_loses_the_race_releases_nothing(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report)
    await store_counted(engine, job)
    stale = await load_job(engine, job)
    job.cancel(T0)
    await save(engine, job)

    stale.fail(T0, "REPORT_QUERY_FAILED", "late")
    with pytest.raises(ConcurrentUpdate):
        await save(engine, stale)

    assert await slots_held(engine) == 0


async def test_concurrent_admissions_of_one_user_take_turns_until_the_first_commits(engine: AsyncEngine) -> None:
    """The counter's row is the per-user lock: the second admission waits for the first transaction and sees the
    slot it took (PostgreSQL: the row lock of ON CONFLICT DO UPDATE; SQLite: the database's write lock)."""
    report = a_report()
    await store(engine, report)
    first_added = asyncio.Event()
    events: list[str] = []

    async def first() -> None:
        async with SqlAlchemyUnitOfWork(engine) as uow:
            assert await uow.jobs.add(a_job(report), default_limit=1) is Admission.QUEUED
            first_added.set()
            await asyncio.sleep(0.5)  # the second transaction is waiting now
            events.append("first commits")
            await uow.commit()

    async def second() -> None:
        await first_added.wait()
        async with SqlAlchemyUnitOfWork(engine) as uow:
            events.append(f"second {(await uow.jobs.add(a_job(report), default_limit=1)).value}")

    await asyncio.gather(first(), second())

    assert events == ["first commits", "second too_many_active"]


async def test_admissions_of_different_users_do_not_wait_for_each_other(pg_engine: AsyncEngine) -> None:
    report = a_report()
    await store(pg_engine, report)
    async with SqlAlchemyUnitOfWork(pg_engine) as holder:
        assert await holder.jobs.add(a_job(report), default_limit=1) is Admission.QUEUED
        async with SqlAlchemyUnitOfWork(pg_engine) as other:
            added = await asyncio.wait_for(other.jobs.add(a_job(report, owner_id="user-2"), default_limit=1), 2)
            assert added is Admission.QUEUED


async def test_a_slot_taken_in_a_transaction_that_rolls_back_is_given_back(pg_engine: AsyncEngine) -> None:
    report = a_report()
    await store(pg_engine, report)
    async with SqlAlchemyUnitOfWork(pg_engine) as uow:
        assert await uow.jobs.add(a_job(report), default_limit=1) is Admission.QUEUED  # and leaves without a commit

    async with SqlAlchemyUnitOfWork(pg_engine) as other:
        assert await asyncio.wait_for(other.jobs.add(a_job(report), default_limit=1), 2) is Admission.QUEUED


async def test_expired_results_are_listed_oldest_expiry_first(engine: AsyncEngine) -> None:
    report = a_report()
    now = T0 + timedelta(days=2)

    def succeeded(expires_in: timedelta, *, artifact: bool = True) -> JobExecutionLog:
        job = started(a_job(report))
        job.succeed(T0, ArtifactRef(job.artifact_key(), 10, "ab" * 32), expires_at=now + expires_in)
        if not artifact:
            job.discard_artifact()
        return job

    later, due_now, earliest = succeeded(-timedelta(hours=1)), succeeded(timedelta(0)), succeeded(-timedelta(days=1))
    live, already_swept = succeeded(timedelta(seconds=1)), succeeded(-timedelta(days=1), artifact=False)
    failed = a_job(report, status=JobStatus.FAILED, expires_at=now - timedelta(days=1))
    await store(engine, report, later, due_now, earliest, live, already_swept, failed)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        expired = await uow.jobs.list_expired(now, limit=10)
        first_two = await uow.jobs.list_expired(now, limit=2)

    assert [j.id for j in expired] == [earliest.id, later.id, due_now.id]
    assert [j.id for j in first_two] == [earliest.id, later.id]
    assert expired[0].artifact == earliest.artifact
