"""The idempotency keys on PostgreSQL and SQLite: round trip, duplicates of a live key, replacement of an expired
one, purge, and two concurrent requests with one key, of which exactly one commits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import DuplicateIdempotencyKey
from domain.idempotency import KEY_LIFETIME, IdempotencyRecord
from domain.jobs import JobExecutionLog
from domain.reports import ReportConfiguration
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.persistence_helpers import T0, a_job, a_key_record, a_report, store

pytestmark = pytest.mark.integration


async def stored_key(engine: AsyncEngine, owner_id: str = "user-1", key: str = "key-1") -> IdempotencyRecord | None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        return await uow.idempotency.get(owner_id, key)


async def add_key(engine: AsyncEngine, record: IdempotencyRecord) -> None:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.idempotency.add(record)
        await uow.commit()


async def stored_jobs(engine: AsyncEngine, report: ReportConfiguration) -> list[JobExecutionLog]:
    async with SqlAlchemyUnitOfWork(engine) as uow:
        return [job for job in await uow.jobs.list_unfinished(limit=100) if job.report_id == report.id]


async def test_a_key_comes_back_for_its_user_only(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report, job)
    record = a_key_record(job, "Ünïcode key " + "k" * 240)

    await add_key(engine, record)

    assert await stored_key(engine, key=record.key) == record
    assert await stored_key(engine, "user-2", record.key) is None
    assert await stored_key(engine, key="another key") is None


async def test_a_live_key_cannot_be_stored_again_and_the_unit_of_work_stays_usable(engine: AsyncEngine) -> None:
    report = a_report()
    first, second = a_job(report), a_job(report)
    await store(engine, report, first)
    await add_key(engine, a_key_record(first))

    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.jobs.add(second)
        with pytest.raises(DuplicateIdempotencyKey):
            await uow.idempotency.add(a_key_record(second, created_at=T0 + KEY_LIFETIME - timedelta(microseconds=1)))
        kept = await uow.idempotency.get("user-1", "key-1")
        await uow.commit()  # on PostgreSQL too: the refused INSERT did not abort the transaction

    assert kept is not None
    assert kept.job_id == first.id
    assert {j.id for j in await stored_jobs(engine, report)} == {first.id, second.id}


async def test_the_same_key_of_another_user_is_another_key(engine: AsyncEngine) -> None:
    report = a_report()
    mine, theirs = a_job(report), a_job(report, owner_id="user-2")
    await store(engine, report, mine, theirs)

    await add_key(engine, a_key_record(mine))
    await add_key(engine, a_key_record(theirs))

    assert [await stored_key(engine, owner) for owner in ("user-1", "user-2")] == [
        a_key_record(mine),
        a_key_record(theirs),
    ]


async def test_an_expired_key_is_replaced(engine: AsyncEngine) -> None:
    report = a_report()
    old, new = a_job(report), a_job(report)
    await store(engine, report, old, new)
    await add_key(engine, a_key_record(old))
    replacement = a_key_record(new, created_at=T0 + KEY_LIFETIME)

    await add_key(engine, replacement)

    assert await stored_key(engine) == replacement


async def test_a_deleted_key_can_be_used_again(engine: AsyncEngine) -> None:
    report = a_report()
    first, second = a_job(report), a_job(report)
    await store(engine, report, first, second)
    await add_key(engine, a_key_record(first))

    async with SqlAlchemyUnitOfWork(engine) as uow:
        await uow.idempotency.delete("user-1", "key-1")
        await uow.idempotency.delete("user-1", "never stored")
        await uow.idempotency.add(a_key_record(second))
        await uow.commit()

    assert await stored_key(engine) == a_key_record(second)


async def test_purge_deletes_the_keys_created_before_the_cutoff(engine: AsyncEngine) -> None:
    report = a_report()
    job = a_job(report)
    await store(engine, report, job)
    records = [a_key_record(job, f"key-{hours}", created_at=T0 + timedelta(hours=hours)) for hours in range(4)]
    for record in records:
        await add_key(engine, record)

    async with SqlAlchemyUnitOfWork(engine) as uow:
        purged = await uow.idempotency.purge(created_before=T0 + timedelta(hours=2))
        await uow.commit()

    assert purged == 2
    assert [await stored_key(engine, key=r.key) for r in records] == [None, None, records[2], records[3]]


async def test_of_two_concurrent_requests_with_one_key_exactly_one_commits(engine: AsyncEngine) -> None:
    """Each inserts its job and then the key, the second while the first has not committed yet. PostgreSQL makes
    the second INSERT of the key wait for the first transaction, SQLite the second transaction's first write;
    then the key is taken, and the second job is rolled back with its unit of work."""
    report = a_report()
    await store(engine, report)
    first_holds_the_key = asyncio.Event()

    async def generate(*, first: bool) -> JobExecutionLog | None:
        if not first:
            await first_holds_the_key.wait()
        async with SqlAlchemyUnitOfWork(engine) as uow:
            job = a_job(report)
            await uow.jobs.add(job)
            try:
                await uow.idempotency.add(a_key_record(job))
            except DuplicateIdempotencyKey:
                return None
            first_holds_the_key.set()
            await asyncio.sleep(0.3)  # the other request is waiting for this transaction now
            await uow.commit()
            return job

    outcomes = await asyncio.gather(generate(first=True), generate(first=False))

    assert outcomes[0] is not None
    assert outcomes[1] is None
    assert [j.id for j in await stored_jobs(engine, report)] == [outcomes[0].id]
    assert await stored_key(engine) == a_key_record(outcomes[0])


async def test_a_key_whose_first_request_rolled_back_is_taken_by_the_waiting_one(engine: AsyncEngine) -> None:
    report = a_report()
    first, second = a_job(report), a_job(report)
    await store(engine, report, first, second)
    first_added = asyncio.Event()

    async def add_then_roll_back() -> None:
        async with SqlAlchemyUnitOfWork(engine) as uow:
            await uow.idempotency.add(a_key_record(first))
            first_added.set()
            await asyncio.sleep(0.3)

    async def add_after_the_first() -> None:
        await first_added.wait()
        await add_key(engine, a_key_record(second))

    await asyncio.gather(add_then_roll_back(), add_after_the_first())

    assert await stored_key(engine) == a_key_record(second)
