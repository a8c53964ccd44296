from collections.abc import Callable

from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from application.job_admission import UnitOfWorkAdmission
from application.reconcile_jobs import Reconciled, ReconcileJobs
from domain.jobs import ErrorCode, JobStatus
from domain.reports import ReportConfiguration
from tests.fakes import FakeClock, FakeDatabase, FakeJobQueue, FakeUnitOfWork


async def test_lost_queue_entries_and_lost_workers_are_repaired(
    uow: Callable[[], FakeUnitOfWork], db: FakeDatabase, clock: FakeClock, report: ReportConfiguration
) -> None:
    initiate = InitiateAsynchronousReportJob(uow, UnitOfWorkAdmission(uow), FakeJobQueue(db), clock)
    queued, alive, lost, exhausted, done = [
        (await initiate.execute(InitiateReportJob(report_id=report.id, user_id="a"))).job_id for _ in range(5)
    ]
    clock.advance(10)
    db.jobs[alive].start(clock(), clock.now.replace(year=2100))
    db.jobs[lost].start(clock(), clock.now)
    db.jobs[exhausted].start(clock(), clock.now)
    db.jobs[exhausted].attempts = 3
    db.jobs[done].start(clock(), clock.now)
    db.jobs[done].fail(clock(), "X", "x")
    queue = FakeJobQueue(db)

    result = await ReconcileJobs(uow, queue, clock, max_attempts=3).execute()

    assert result == Reconciled(enqueued=2, requeued=1, failed=1)
    assert {(j, a) for j, a, _ in queue.deliveries} == {(queued, 1), (lost, 2)}
    assert db.jobs[alive].status is JobStatus.RUNNING
    assert db.jobs[lost].status is JobStatus.QUEUED
    error = db.jobs[exhausted].error
    assert (db.jobs[exhausted].status, error and error.code) == (JobStatus.FAILED, ErrorCode.WORKER_LOST)


async def test_fresh_queued_jobs_are_left_to_their_own_enqueue(
    uow: Callable[[], FakeUnitOfWork], db: FakeDatabase, clock: FakeClock, report: ReportConfiguration
) -> None:
    await InitiateAsynchronousReportJob(uow, UnitOfWorkAdmission(uow), FakeJobQueue(db), clock).execute(
        InitiateReportJob(report_id=report.id, user_id="a")
    )
    queue = FakeJobQueue(db)
    assert await ReconcileJobs(uow, queue, clock, max_attempts=3).execute() == Reconciled()
    assert queue.deliveries == []


async def test_at_embedded_start_every_running_job_is_an_orphan(
    uow: Callable[[], FakeUnitOfWork], db: FakeDatabase, clock: FakeClock, report: ReportConfiguration
) -> None:
    job_id = (
        await InitiateAsynchronousReportJob(uow, UnitOfWorkAdmission(uow), FakeJobQueue(db), clock).execute(
            InitiateReportJob(report_id=report.id, user_id="a")
        )
    ).job_id
    db.jobs[job_id].start(clock(), clock.now.replace(year=2100))
    queue = FakeJobQueue(db)
    result = await ReconcileJobs(uow, queue, clock, max_attempts=3).execute(orphan_running=True)
    assert result.requeued == 1
    assert queue.deliveries[0][:2] == (job_id, 2)
