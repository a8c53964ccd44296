import asyncio
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from application.errors import QueueUnavailable, StorageUnavailable
from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from application.job_admission import UnitOfWorkAdmission
from domain.errors import (
    ConcurrentUpdate,
    IdempotencyKeyReused,
    InvalidParameters,
    ReportNotAsyncDeliverable,
    ReportNotFound,
    TooManyActiveJobs,
)
from domain.idempotency import KEY_LIFETIME
from domain.jobs import ErrorCode, JobExecutionLog, JobStatus
from domain.reports import ReportConfiguration
from domain.repositories import Admission
from tests.fakes import FakeClock, FakeDatabase, FakeJobQueue, FakeUnitOfWork


@pytest.fixture
def initiate(uow: Callable[[], FakeUnitOfWork], queue: FakeJobQueue, clock: FakeClock) -> InitiateAsynchronousReportJob:
    return InitiateAsynchronousReportJob(uow, UnitOfWorkAdmission(uow), queue, clock)


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


async def test_a_format_whose_library_this_service_lacks_is_refused_naming_the_format_and_creates_no_job(
    uow: Callable[[], FakeUnitOfWork],
    queue: FakeJobQueue,
    clock: FakeClock,
    report: ReportConfiguration,
    db: FakeDatabase,
) -> None:
    initiate = InitiateAsynchronousReportJob(
        uow, UnitOfWorkAdmission(uow), queue, clock, installed_formats=frozenset({"csv"})
    )

    with pytest.raises(InvalidParameters) as exc:
        await initiate.execute(InitiateReportJob(report_id=report.id, user_id="a", format="json"))

    [error] = exc.value.errors
    assert error.field == "format"
    assert "the json format is not installed on this server" in error.message
    assert (db.jobs, queue.enqueued) == ({}, [])
    accepted = await initiate.execute(InitiateReportJob(report_id=report.id, user_id="a", format="csv"))
    assert accepted.job_id in db.jobs


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


async def test_same_idempotency_key_and_request_returns_the_first_job(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase, queue: FakeJobQueue
) -> None:
    command = InitiateReportJob(report_id=report.id, user_id="alice", parameters={"region": "US"}, idempotency_key="k1")
    first = await initiate.execute(command)
    again = await initiate.execute(command)
    assert (again.job_id, again.replayed, first.replayed) == (first.job_id, True, False)
    assert len(db.jobs) == 1
    assert queue.enqueued == [first.job_id]


async def test_idempotency_keys_belong_to_one_user(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase
) -> None:
    alice = await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice", idempotency_key="k"))
    bob = await initiate.execute(InitiateReportJob(report_id=report.id, user_id="bob", idempotency_key="k"))
    assert alice.job_id != bob.job_id
    assert not bob.replayed


async def test_same_idempotency_key_with_another_request_is_refused(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase
) -> None:
    await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice", idempotency_key="k1"))
    with pytest.raises(IdempotencyKeyReused):
        await initiate.execute(
            InitiateReportJob(report_id=report.id, user_id="alice", format="json", idempotency_key="k1")
        )
    assert len(db.jobs) == 1


async def test_idempotency_key_expires_after_its_lifetime(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase, clock: FakeClock
) -> None:
    command = InitiateReportJob(report_id=report.id, user_id="alice", idempotency_key="k1")
    first = await initiate.execute(command)
    clock.advance(KEY_LIFETIME.total_seconds())
    second = await initiate.execute(command)
    assert (second.job_id != first.job_id, second.replayed) == (True, False)


async def test_concurrent_requests_with_one_key_create_one_job(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase
) -> None:
    command = InitiateReportJob(report_id=report.id, user_id="alice", idempotency_key="same")
    results = await asyncio.gather(*(initiate.execute(command) for _ in range(5)))
    assert len({r.job_id for r in results}) == 1
    assert len(db.jobs) == 1


async def test_queue_failure_frees_the_idempotency_key_for_a_retry(
    initiate: InitiateAsynchronousReportJob, report: ReportConfiguration, db: FakeDatabase, queue: FakeJobQueue
) -> None:
    command = InitiateReportJob(report_id=report.id, user_id="alice", idempotency_key="k1")
    queue.fail = True
    with pytest.raises(QueueUnavailable):
        await initiate.execute(command)
    queue.fail = False
    retried = await initiate.execute(command)
    assert not retried.replayed
    assert db.jobs[retried.job_id].status is JobStatus.QUEUED


async def test_user_over_the_active_job_limit_is_refused(
    uow: Callable[[], FakeUnitOfWork],
    queue: FakeJobQueue,
    clock: FakeClock,
    report: ReportConfiguration,
    db: FakeDatabase,
) -> None:
    limited = InitiateAsynchronousReportJob(uow, UnitOfWorkAdmission(uow), queue, clock, default_limit=2)
    for _ in range(2):
        await limited.execute(InitiateReportJob(report_id=report.id, user_id="alice"))
    with pytest.raises(TooManyActiveJobs):
        await limited.execute(InitiateReportJob(report_id=report.id, user_id="alice"))
    await limited.execute(InitiateReportJob(report_id=report.id, user_id="bob"))
    next(iter(db.jobs.values())).cancel(clock())
    await limited.execute(InitiateReportJob(report_id=report.id, user_id="alice"))
    assert len(db.jobs) == 4


class StaleFirstAdmission(UnitOfWorkAdmission):
    """Serves `stale` for a report until asked for a fresh read, as a process-wide cache would after an edit."""

    def __init__(self, uow: Callable[[], FakeUnitOfWork], stale: ReportConfiguration) -> None:
        super().__init__(uow)
        self.stale: ReportConfiguration | None = stale
        self.reads: list[bool] = []

    async def report(self, report_id: UUID, *, fresh: bool = False) -> ReportConfiguration | None:
        self.reads.append(fresh)
        if self.stale is not None and not fresh:
            return self.stale
        return await super().report(report_id)


async def test_a_report_changed_since_it_was_cached_is_read_afresh_and_the_job_follows_the_current_one(
    uow: Callable[[], FakeUnitOfWork],
    queue: FakeJobQueue,
    clock: FakeClock,
    report: ReportConfiguration,
    db: FakeDatabase,
) -> None:
    current = report.with_changes(query="SELECT 2 AS current", updated_at=clock() + timedelta(seconds=1))
    db.reports[report.id] = current
    admission = StaleFirstAdmission(uow, stale=report)
    initiate = InitiateAsynchronousReportJob(uow, admission, queue, clock)

    result = await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice"))

    assert admission.reads == [False, True]
    assert db.jobs[result.job_id].query == "SELECT 2 AS current"


async def test_a_report_deleted_since_it_was_cached_is_not_found(
    uow: Callable[[], FakeUnitOfWork],
    queue: FakeJobQueue,
    clock: FakeClock,
    report: ReportConfiguration,
    db: FakeDatabase,
) -> None:
    del db.reports[report.id]
    initiate = InitiateAsynchronousReportJob(uow, StaleFirstAdmission(uow, stale=report), queue, clock)

    with pytest.raises(ReportNotFound):
        await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice"))
    assert (db.jobs, queue.enqueued) == ({}, [])


async def test_a_report_that_changes_on_every_read_ends_in_a_conflict_without_a_job(
    uow: Callable[[], FakeUnitOfWork],
    queue: FakeJobQueue,
    clock: FakeClock,
    report: ReportConfiguration,
    db: FakeDatabase,
) -> None:
    class AlwaysChanged(UnitOfWorkAdmission):
        async def admit(self, job: JobExecutionLog, **_: object) -> Admission:
            return Admission.REPORT_CHANGED

    initiate = InitiateAsynchronousReportJob(uow, AlwaysChanged(uow), queue, clock)

    with pytest.raises(ConcurrentUpdate):
        await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice"))
    assert (db.jobs, queue.enqueued) == ({}, [])
