import asyncio
import copy
from collections.abc import Callable, Sequence
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from application.errors import StorageUnavailable
from application.heartbeat import Heartbeat, LeaseLost
from application.job_ledger import UnitOfWorkJobLedger
from domain.jobs import JobExecutionLog, JobStatus
from domain.reports import ReportConfiguration
from tests.fakes import FakeClock, FakeDatabase, FakeUnitOfWork

INTERVAL = 0.01
LEASE = timedelta(seconds=15)


class CountingLedger(UnitOfWorkJobLedger):
    def __init__(self, db: FakeDatabase) -> None:
        super().__init__(lambda: FakeUnitOfWork(db))
        self.renewals: list[int] = []

    async def renew_leases(self, jobs: Sequence[JobExecutionLog]) -> set[UUID]:
        self.renewals.append(len(jobs))
        return await super().renew_leases(jobs)


@pytest.fixture
def ledger(db: FakeDatabase) -> CountingLedger:
    return CountingLedger(db)


@pytest.fixture
def heartbeat(ledger: CountingLedger, clock: FakeClock) -> Heartbeat:
    return Heartbeat(ledger, clock, lease_seconds=LEASE.total_seconds(), interval_seconds=INTERVAL)


@pytest.fixture
def running_job(db: FakeDatabase, clock: FakeClock, report: ReportConfiguration) -> Callable[[], JobExecutionLog]:
    def make() -> JobExecutionLog:
        job = JobExecutionLog(
            id=uuid4(),
            report_id=report.id,
            owner_id="alice",
            report_name=report.name,
            query=report.query,
            format="csv",
            parameters={},
            parameter_types={},
            created_at=clock(),
        )
        job.start(clock(), clock() + LEASE)
        db.jobs[job.id] = job
        return copy.deepcopy(job)  # the worker's copy, apart from the stored one

    return make


async def test_one_write_renews_the_leases_of_all_running_jobs_and_the_loop_ends_with_them(
    heartbeat: Heartbeat,
    ledger: CountingLedger,
    db: FakeDatabase,
    clock: FakeClock,
    running_job: Callable[[], JobExecutionLog],
) -> None:
    jobs = [running_job() for _ in range(5)]
    clock.advance(5)

    results = await asyncio.gather(*(heartbeat.run(job, asyncio.sleep(8 * INTERVAL, job.id)) for job in jobs))

    assert results == [job.id for job in jobs]
    assert ledger.renewals, "renewed while running"
    assert set(ledger.renewals) == {5}, "all jobs in each write"
    assert all(db.jobs[job.id].lease_expires_at == clock() + LEASE for job in jobs)
    count = len(ledger.renewals)
    await asyncio.sleep(3 * INTERVAL)
    assert len(ledger.renewals) == count, "no renewal without a running job"
    assert [t for t in asyncio.all_tasks() if t.get_name() == "lease-heartbeat"] == []


async def test_a_job_that_lost_its_lease_is_stopped_and_the_others_run_on(
    heartbeat: Heartbeat, db: FakeDatabase, clock: FakeClock, running_job: Callable[[], JobExecutionLog]
) -> None:
    lost, kept = running_job(), running_job()
    db.jobs[lost.id].cancel(clock())
    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    with pytest.raises(LeaseLost):
        await asyncio.gather(heartbeat.run(lost, forever()), heartbeat.run(kept, asyncio.sleep(5 * INTERVAL)))
    assert stopped.is_set()
    assert await heartbeat.run(kept, asyncio.sleep(INTERVAL, "done")) == "done"
    assert db.jobs[kept.id].status is JobStatus.RUNNING


async def test_a_lost_lease_is_lease_lost_whatever_the_work_made_of_the_cancel(
    heartbeat: Heartbeat, db: FakeDatabase, clock: FakeClock, running_job: Callable[[], JobExecutionLog]
) -> None:
    job = running_job()
    db.jobs[job.id].cancel(clock())

    async def turns_the_cancel_into_an_error() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("connection closed mid-query") from None

    with pytest.raises(LeaseLost):
        await heartbeat.run(job, turns_the_cancel_into_an_error())
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0, "the task is left as if never cancelled"


async def test_a_stopping_worker_cancels_the_job_even_when_its_lease_is_lost_at_the_same_time(
    db: FakeDatabase, clock: FakeClock, running_job: Callable[[], JobExecutionLog]
) -> None:
    tasks: list[asyncio.Task[object]] = []

    class StopDuringRenewal(CountingLedger):
        async def renew_leases(self, jobs: Sequence[JobExecutionLog]) -> set[UUID]:
            tasks[0].cancel()  # the worker stops while the renewal finds the job taken over
            return set()

    heartbeat = Heartbeat(StopDuringRenewal(db), clock, lease_seconds=15, interval_seconds=INTERVAL)
    tasks.append(asyncio.create_task(heartbeat.run(running_job(), asyncio.sleep(3600))))

    with pytest.raises(asyncio.CancelledError):
        await tasks[0]


async def test_an_unavailable_database_skips_renewals_and_the_job_runs_on(
    heartbeat: Heartbeat, ledger: CountingLedger, db: FakeDatabase, running_job: Callable[[], JobExecutionLog]
) -> None:
    job = running_job()
    db.unavailable = True

    assert await heartbeat.run(job, asyncio.sleep(5 * INTERVAL, "done")) == "done"
    assert ledger.renewals


async def test_a_failing_renewal_leaves_the_loop_running(
    clock: FakeClock, db: FakeDatabase, running_job: Callable[[], JobExecutionLog]
) -> None:
    class Flaky(CountingLedger):
        async def renew_leases(self, jobs: Sequence[JobExecutionLog]) -> set[UUID]:
            self.renewals.append(len(jobs))
            if len(self.renewals) == 1:
                raise RuntimeError("a bug")
            if len(self.renewals) == 2:
                raise StorageUnavailable("down")
            return await UnitOfWorkJobLedger.renew_leases(self, jobs)

    ledger = Flaky(db)
    heartbeat = Heartbeat(ledger, clock, lease_seconds=15, interval_seconds=INTERVAL)

    assert await heartbeat.run(running_job(), asyncio.sleep(8 * INTERVAL, "done")) == "done"
    assert len(ledger.renewals) >= 3
