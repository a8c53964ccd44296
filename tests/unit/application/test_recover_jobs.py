from collections.abc import Callable

from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from application.recover_jobs import RecoverUnfinishedJobs
from domain.jobs import ErrorCode, JobStatus
from domain.reports import ReportConfiguration
from tests.fakes import FakeClock, FakeDatabase, FakeJobQueue, FakeUnitOfWork


async def test_queued_and_orphaned_running_jobs_are_handed_back_to_the_queue(
    uow: Callable[[], FakeUnitOfWork], db: FakeDatabase, clock: FakeClock, report: ReportConfiguration
) -> None:
    initiate = InitiateAsynchronousReportJob(uow, FakeJobQueue(db), clock)
    queued, running, exhausted, done = [
        (await initiate.execute(InitiateReportJob(report_id=report.id, user_id="a"))).job_id for _ in range(4)
    ]
    db.jobs[running].start(clock())
    db.jobs[exhausted].start(clock())
    db.jobs[exhausted].attempts = 3
    db.jobs[done].start(clock())
    db.jobs[done].fail(clock(), "X", "x")

    queue = FakeJobQueue(db)
    count = await RecoverUnfinishedJobs(uow, queue, clock, max_attempts=3).execute()

    assert count == 2
    assert set(queue.enqueued) == {queued, running}
    assert db.jobs[running].status is JobStatus.QUEUED
    lost = db.jobs[exhausted]
    assert lost.status is JobStatus.FAILED
    assert lost.error is not None
    assert lost.error.code == ErrorCode.WORKER_LOST
    assert db.jobs[done].status is JobStatus.FAILED
