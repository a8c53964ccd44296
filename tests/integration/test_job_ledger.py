"""The job ledgers that workers write through: the PostgreSQL one (one autocommitted statement per call) and the
unit-of-work one (PostgreSQL and SQLite) keep the same rules: the claim is JobExecutionLog.start, saves are guarded
by the version, lease renewals by the status and attempt."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import StorageUnavailable
from application.job_ledger import UnitOfWorkJobLedger
from application.ports import JobLedger
from domain.errors import ConcurrentUpdate
from domain.jobs import ArtifactRef, JobExecutionLog, JobStatus
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.job_ledger import PostgresJobLedger
from infrastructure.persistence.tables import inline_artifacts
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.integration.conftest import disposable, emptied
from tests.integration.persistence_helpers import (
    LEASE,
    T0,
    a_job,
    a_report,
    fields,
    load_job,
    logged_statements,
    slots_held,
    started,
    store,
    store_counted,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres-ledger", "uow-ledger-postgresql", "uow-ledger-sqlite"])
async def ledger_engine(
    request: pytest.FixtureRequest, sqlite_root: Path
) -> AsyncIterator[tuple[JobLedger, AsyncEngine]]:
    url: str = request.getfixturevalue("sqlite_url" if request.param.endswith("sqlite") else "pg_url")
    engine = await emptied(disposable(url, sqlite_root))
    ledger: JobLedger
    if request.param == "postgres-ledger":
        ledger = PostgresJobLedger(engine)
    else:
        ledger = UnitOfWorkJobLedger(lambda: SqlAlchemyUnitOfWork(engine))
    yield ledger, engine
    await engine.dispose()


async def a_stored_job(engine: AsyncEngine, **changes: Any) -> JobExecutionLog:
    report = a_report()
    job = a_job(report, **changes)
    await store(engine, report, job)
    return job


async def test_a_claim_starts_a_queued_job_as_the_domain_does(ledger_engine: tuple[JobLedger, AsyncEngine]) -> None:
    ledger, engine = ledger_engine
    job = await a_stored_job(engine, progress=7, attempts=1)  # handed back once: attempt 2 is next
    expected = copy.deepcopy(job)
    expected.start(T0, T0 + LEASE)
    expected.version += 1

    claimed = await ledger.claim(job.id, T0, T0 + LEASE)

    assert claimed is not None
    assert fields(claimed) == fields(expected)
    assert fields(await load_job(engine, job)) == fields(expected)


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
async def test_a_claim_of_a_job_that_is_not_queued_changes_nothing(
    ledger_engine: tuple[JobLedger, AsyncEngine], status: JobStatus
) -> None:
    ledger, engine = ledger_engine
    job = await a_stored_job(engine, status=status)

    assert await ledger.claim(job.id, T0, T0 + LEASE) is None
    assert await ledger.claim(uuid4(), T0, T0 + LEASE) is None
    assert fields(await load_job(engine, job)) == fields(job)


async def test_of_two_concurrent_claims_exactly_one_wins(ledger_engine: tuple[JobLedger, AsyncEngine]) -> None:
    ledger, engine = ledger_engine
    job = await a_stored_job(engine)

    claims = await asyncio.gather(*(ledger.claim(job.id, T0, T0 + LEASE) for _ in range(2)))

    assert sum(claim is not None for claim in claims) == 1
    stored = await load_job(engine, job)
    assert (stored.status, stored.attempts, stored.version) == (JobStatus.RUNNING, 1, 1)


async def test_a_save_is_guarded_by_the_version_and_stores_every_field(
    ledger_engine: tuple[JobLedger, AsyncEngine],
) -> None:
    ledger, engine = ledger_engine
    job = await a_stored_job(engine)
    claimed = await ledger.claim(job.id, T0, T0 + LEASE)
    assert claimed is not None
    stale = copy.deepcopy(claimed)
    claimed.succeed(T0 + LEASE, ArtifactRef("k/attempt-1.csv", 12, "a" * 64), T0 + 3 * LEASE)

    await ledger.save(claimed)

    assert claimed.version == 2
    assert fields(await load_job(engine, job)) == fields(claimed)
    assert fields(await ledger.get(job.id) or job) == fields(claimed)
    stale.fail(T0 + LEASE, "REPORT_TIMEOUT", "too slow")
    with pytest.raises(ConcurrentUpdate):
        await ledger.save(stale)
    assert (await load_job(engine, job)).status is JobStatus.SUCCEEDED


async def stored_artifacts(engine: AsyncEngine) -> list[tuple[str, bytes, datetime]]:
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(inline_artifacts).order_by(inline_artifacts.c.key))
        return [(row.key, row.content, row.created_at) for row in result]


async def test_a_succeeded_save_stores_the_artifacts_content_with_it_and_a_lost_one_stores_nothing(
    ledger_engine: tuple[JobLedger, AsyncEngine],
) -> None:
    ledger, engine = ledger_engine
    job = await a_stored_job(engine)
    claimed = await ledger.claim(job.id, T0, T0 + LEASE)
    assert claimed is not None
    stale = copy.deepcopy(claimed)
    content = b"n\r\n1\r\n" + bytes(range(256))
    claimed.succeed(T0 + LEASE, ArtifactRef("k/attempt-1.csv", len(content), "a" * 64, content), T0 + 3 * LEASE)
    cancelled = copy.deepcopy(claimed)

    await ledger.save(claimed)

    assert await stored_artifacts(engine) == [("k/attempt-1.csv", content, T0 + LEASE)]
    assert claimed.artifact == ArtifactRef("k/attempt-1.csv", len(content), "a" * 64)
    assert claimed.artifact is not None
    assert claimed.artifact.content is None  # saved: not held any longer
    assert fields(await load_job(engine, job)) == fields(claimed)
    # A writer that lost the race (the job was cancelled, or taken over) stores neither its outcome nor its artifact.
    stale.succeed(T0 + LEASE, ArtifactRef("k/attempt-2.csv", 3, "b" * 64, b"new"), T0 + 3 * LEASE)
    with pytest.raises(ConcurrentUpdate):
        await ledger.save(stale)
    assert [key for key, *_ in await stored_artifacts(engine)] == ["k/attempt-1.csv"]
    assert cancelled.artifact is not None
    assert cancelled.artifact.content == content  # an unsaved copy keeps it


async def test_leases_are_renewed_only_for_jobs_still_running_in_the_same_attempt(
    ledger_engine: tuple[JobLedger, AsyncEngine],
) -> None:
    ledger, engine = ledger_engine
    running, cancelled, taken_over, queued = [await a_stored_job(engine) for _ in range(4)]
    for job in (running, cancelled, taken_over):
        started(job)
        await ledger.save(job)
    other = copy.deepcopy(cancelled)
    other.cancel(T0)
    await ledger.save(other)
    newer = copy.deepcopy(taken_over)
    newer.requeue()
    started(newer, at=T0 + LEASE)
    await ledger.save(newer)
    renewal = T0 + 2 * LEASE
    beating = [running, cancelled, taken_over, queued]
    for job in beating:
        job.renew_lease(renewal)
        job.progress = 40

    held = await ledger.renew_leases(beating)

    assert held == {running.id}
    stored = await load_job(engine, running)
    assert (stored.lease_expires_at, stored.progress, stored.version) == (renewal, 40, 1)
    assert fields(await load_job(engine, cancelled)) == fields(other)
    assert fields(await load_job(engine, taken_over)) == fields(newer)
    assert (await load_job(engine, queued)).lease_expires_at is None
    running.progress = 10  # a renewal never lowers the progress, and still renews the lease
    running.renew_lease(renewal + timedelta(seconds=1))
    assert await ledger.renew_leases([running]) == {running.id}
    stored = await load_job(engine, running)
    assert (stored.progress, stored.lease_expires_at) == (40, renewal + timedelta(seconds=1))
    assert await ledger.renew_leases([]) == set()


async def test_claim_save_and_renewal_are_one_statement_each_without_transaction_round_trips(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)  # one connection: the one the logger watches
    try:
        job, small = await a_stored_job(engine), await a_stored_job(engine)
        ledger = PostgresJobLedger(engine)
        await ledger.renew_leases([job])  # asyncpg looks the array types up once per connection
        sent = await logged_statements(engine)

        claimed = await ledger.claim(job.id, T0, T0 + LEASE)
        assert claimed is not None
        claimed.fail(T0, "REPORT_TIMEOUT", "too slow")
        await ledger.save(claimed)
        await ledger.renew_leases([claimed])
        running = await ledger.claim(small.id, T0, T0 + LEASE)
        assert running is not None
        running.succeed(T0, ArtifactRef(f"{small.id}/attempt-1.csv", 2, "c" * 64, b"ok"))
        await ledger.save(running)
        await asyncio.sleep(0.01)  # asyncpg calls query loggers soon after, not during, the query
    finally:
        await engine.dispose()

    # The save of a final status is one statement too: the job's UPDATE and its owner's counter, in a WITH; and
    # so is a success whose artifact is kept in the database (the artifact's INSERT joins the WITH).
    assert [query.split()[0] for query in sent] == ["UPDATE", "WITH", "UPDATE", "UPDATE", "WITH"]
    assert "INSERT INTO inline_artifacts" in sent[-1]


async def test_an_unreachable_database_is_storage_unavailable() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/reportgen")
    ledger = PostgresJobLedger(engine)
    try:
        with pytest.raises(StorageUnavailable):
            await ledger.claim(uuid4(), T0, T0 + LEASE)
        with pytest.raises(StorageUnavailable):
            await ledger.renew_leases([started(a_job(a_report()))])
    finally:
        await engine.dispose()


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
async def test_a_final_status_gives_the_jobs_slot_back_in_the_same_write(
    ledger_engine: tuple[JobLedger, AsyncEngine], outcome: str
) -> None:
    ledger, engine = ledger_engine
    report = a_report()
    job, other = a_job(report), a_job(report)
    await store(engine, report)
    await store_counted(engine, job, other)
    claimed = await ledger.claim(job.id, T0, T0 + LEASE)
    assert claimed is not None
    slots_while_running = await slots_held(engine)

    if outcome == "succeeded":
        claimed.succeed(T0, ArtifactRef(claimed.artifact_key(), 1, "ab" * 32))
    elif outcome == "failed":
        claimed.fail(T0, "REPORT_TIMEOUT", "too slow")
    else:
        claimed.cancel(T0)
    await ledger.save(claimed)

    assert (slots_while_running, await slots_held(engine)) == (2, 1)
