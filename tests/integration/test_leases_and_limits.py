"""Leases and limits on PostgreSQL and SQLite: heartbeats of the attempt that holds a job, the per-user count of
active jobs (and how concurrent counts of one user take turns), and the jobs whose results have expired."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.jobs import ArtifactRef, JobExecutionLog, JobStatus
from infrastructure.persistence.repositories import owner_lock_key
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import LEASE, T0, a_job, a_report, load_job, started, store

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


async def test_only_the_queued_and_running_jobs_of_that_user_are_active(engine: AsyncEngine) -> None:
    report = a_report()
    queued, running = a_job(report), started(a_job(report))
    finished = [a_job(report, status=status) for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)]
    someone_elses = a_job(report, owner_id="user-2")
    await store(engine, report, queued, running, *finished, someone_elses)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        counts = [await uow.jobs.count_active(owner) for owner in ("user-1", "user-2", "user-3")]

    assert counts == [2, 1, 0]


async def test_concurrent_counts_of_one_user_take_turns_until_the_first_commits(engine: AsyncEngine) -> None:
    """The check-then-insert of a per-user limit: the second count waits for the first transaction, and sees
    the job it added (PostgreSQL: an advisory lock per user; SQLite: the database's write lock)."""
    report = a_report()
    await store(engine, report)
    first_counted = asyncio.Event()
    events: list[tuple[str, int]] = []

    async def first() -> None:
        async with SqlAlchemyUnitOfWork(engine) as uow:
            events.append(("first counted", await uow.jobs.count_active("user-1")))
            first_counted.set()
            await asyncio.sleep(0.5)  # the second transaction is waiting now
            await uow.jobs.add(a_job(report))
            await uow.commit()
            events.append(("first committed", 1))

    async def second() -> None:
        await first_counted.wait()
        async with SqlAlchemyUnitOfWork(engine) as uow:
            events.append(("second counted", await uow.jobs.count_active("user-1")))

    await asyncio.gather(first(), second())

    assert events == [("first counted", 0), ("first committed", 1), ("second counted", 1)]


async def test_counts_of_different_users_do_not_wait_for_each_other(pg_engine: AsyncEngine) -> None:
    async with SqlAlchemyUnitOfWork(pg_engine) as holder:
        assert await holder.jobs.count_active("user-1") == 0
        async with SqlAlchemyUnitOfWork(pg_engine) as other:
            assert await asyncio.wait_for(other.jobs.count_active("user-2"), timeout=2) == 0


async def test_the_count_lock_ends_with_the_transaction_that_took_it(pg_engine: AsyncEngine) -> None:
    async with SqlAlchemyUnitOfWork(pg_engine) as other:  # entered first: a connection of its own
        async with SqlAlchemyUnitOfWork(pg_engine) as uow:
            await uow.jobs.count_active("user-1")  # and leaves without a commit

        assert await asyncio.wait_for(other.jobs.count_active("user-1"), timeout=2) == 0


def test_the_lock_key_of_a_user_is_stable_and_a_signed_64_bit_integer() -> None:
    keys = {owner_lock_key(owner) for owner in ("user-1", "user-2", "", "ü" * 300)}

    assert owner_lock_key("user-1") == owner_lock_key("user-1")
    assert len(keys) == 4
    assert all(-(2**63) <= key < 2**63 for key in keys)


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
