from collections.abc import Callable
from uuid import UUID, uuid4

import pytest

from application.cancel_job import CancelJob
from application.job_queries import JobQuery
from domain.errors import JobAlreadyFinished, JobNotFound
from domain.jobs import JobStatus
from tests.fakes import FakeClock, FakeDatabase, FakeJobQueue, FakeUnitOfWork


@pytest.fixture
def cancel(uow: Callable[[], FakeUnitOfWork], queue: FakeJobQueue, clock: FakeClock) -> CancelJob:
    return CancelJob(uow, queue, clock)


async def test_queued_job_is_cancelled_at_once_without_an_abort(
    cancel: CancelJob, job_id: UUID, db: FakeDatabase, queue: FakeJobQueue
) -> None:
    job = await cancel.execute(JobQuery(job_id=job_id, user_id="alice"))
    assert job.status is db.jobs[job_id].status is JobStatus.CANCELLED
    assert queue.aborted == []


async def test_running_job_is_cancelled_and_its_attempt_aborted(
    cancel: CancelJob, job_id: UUID, db: FakeDatabase, queue: FakeJobQueue, clock: FakeClock
) -> None:
    db.jobs[job_id].start(clock(), clock.now)
    await cancel.execute(JobQuery(job_id=job_id, user_id="alice"))
    assert db.jobs[job_id].status is JobStatus.CANCELLED
    assert queue.aborted == [(job_id, 1)]


async def test_cancel_still_happens_when_the_queue_cannot_abort(
    cancel: CancelJob, job_id: UUID, db: FakeDatabase, queue: FakeJobQueue, clock: FakeClock
) -> None:
    db.jobs[job_id].start(clock(), clock.now)
    queue.fail = True
    await cancel.execute(JobQuery(job_id=job_id, user_id="alice"))
    assert db.jobs[job_id].status is JobStatus.CANCELLED


async def test_finished_job_cannot_be_cancelled(
    cancel: CancelJob, job_id: UUID, db: FakeDatabase, clock: FakeClock
) -> None:
    db.jobs[job_id].fail(clock(), "X", "x")
    with pytest.raises(JobAlreadyFinished) as exc:
        await cancel.execute(JobQuery(job_id=job_id, user_id="alice"))
    assert exc.value.status == "Failed"


async def test_other_users_and_unknown_jobs_are_not_found(cancel: CancelJob, job_id: UUID, db: FakeDatabase) -> None:
    for query in (JobQuery(job_id=job_id, user_id="bob"), JobQuery(job_id=uuid4(), user_id="alice")):
        with pytest.raises(JobNotFound):
            await cancel.execute(query)
    assert db.jobs[job_id].status is JobStatus.QUEUED
