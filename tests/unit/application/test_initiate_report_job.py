from collections.abc import Callable
from uuid import uuid4

import pytest

from application.errors import QueueUnavailable, StorageUnavailable
from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from domain.errors import InvalidParameters, ReportNotAsyncDeliverable, ReportNotFound
from domain.jobs import ErrorCode, JobStatus
from domain.reports import ReportConfiguration
from tests.fakes import FakeClock, FakeDatabase, FakeJobQueue, FakeUnitOfWork


@pytest.fixture
def initiate(uow: Callable[[], FakeUnitOfWork], queue: FakeJobQueue, clock: FakeClock) -> InitiateAsynchronousReportJob:
    return InitiateAsynchronousReportJob(uow, queue, clock)


async def test_accepted_job_is_committed_before_it_is_enqueued(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase, queue: FakeJobQueue
) -> None:
    result = await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice", request_id="r-1"))
    assert db.log == [f"commit {result.job_id}", f"enqueue {result.job_id}"]
    job = db.jobs[result.job_id]
    assert (job.status, job.owner_id, job.format, job.request_id) == (JobStatus.QUEUED, "alice", "csv", "r-1")
    assert job.parameters == {"region": "EU"}
    assert queue.enqueued == [result.job_id]


async def test_unknown_report_is_not_found_and_nothing_is_enqueued(
    initiate: InitiateAsynchronousReportJob, db: FakeDatabase, queue: FakeJobQueue
) -> None:
    with pytest.raises(ReportNotFound):
        await initiate.execute(InitiateReportJob(report_id=uuid4(), user_id="alice"))
    assert (db.jobs, queue.enqueued) == ({}, [])


async def test_report_not_for_async_api_is_refused(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase, queue: FakeJobQueue
) -> None:
    db.reports[report.id] = report.with_changes(async_enabled=False)
    with pytest.raises(ReportNotAsyncDeliverable):
        await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice"))
    assert (db.jobs, queue.enqueued) == ({}, [])


async def test_invalid_parameters_create_no_job(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase
) -> None:
    with pytest.raises(InvalidParameters):
        await initiate.execute(InitiateReportJob(report_id=report.id, user_id="a", parameters={"region": 1}))
    assert db.jobs == {}


async def test_queue_failure_raises_and_closes_the_job_as_never_queued(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase, queue: FakeJobQueue
) -> None:
    queue.fail = True
    with pytest.raises(QueueUnavailable):
        await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice"))
    (job,) = db.jobs.values()
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == ErrorCode.QUEUE_UNAVAILABLE


async def test_commit_failure_enqueues_nothing(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase, queue: FakeJobQueue
) -> None:
    db.fail_commit = True
    with pytest.raises(StorageUnavailable):
        await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice"))
    assert (db.jobs, queue.enqueued) == ({}, [])
