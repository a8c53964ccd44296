"""Committed job transitions are announced from one place, after the commit, once each."""

from collections.abc import Callable, Sequence
from datetime import timedelta
from uuid import UUID

import pytest

from application.errors import StorageUnavailable
from application.job_events import PublishingJobLedger, Subscribers, publishing
from application.job_ledger import UnitOfWorkJobLedger
from application.ports import JobTransition
from domain.jobs import ArtifactRef, JobStatus
from tests.fakes import FakeClock, FakeDatabase, FakeUnitOfWork


class Heard:
    def __init__(self) -> None:
        self.transitions: list[JobTransition] = []

    async def __call__(self, transitions: Sequence[JobTransition]) -> None:
        self.transitions.extend(transitions)

    @property
    def changes(self) -> list[tuple[JobStatus, JobStatus]]:
        return [(t.change.old, t.change.new) for t in self.transitions]


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
def units(db: FakeDatabase, heard: Heard) -> Callable[[], FakeUnitOfWork]:
    return publishing(lambda: FakeUnitOfWork(db), Subscribers(heard))  # type: ignore[return-value]


async def test_a_committed_transition_is_announced_with_the_job_as_saved(
    units: Callable[[], FakeUnitOfWork], heard: Heard, job_id: UUID, clock: FakeClock
) -> None:
    async with units() as uow:
        job = await uow.jobs.get(job_id)
        assert job is not None
        job.start(clock(), clock.now + timedelta(seconds=15))
        job.succeed(clock(), ArtifactRef("k", 3, "sha"))
        await uow.jobs.update(job)
        assert heard.transitions == [], "nothing is announced before the commit"
        await uow.commit()
    assert heard.changes == [(JobStatus.QUEUED, JobStatus.RUNNING), (JobStatus.RUNNING, JobStatus.SUCCEEDED)]
    assert all(t.job.status is JobStatus.SUCCEEDED and t.job.artifact is not None for t in heard.transitions)
    assert heard.transitions[0].job is not job, "a snapshot: later changes to the entity are not what was saved"


async def test_a_unit_of_work_left_without_commit_announces_nothing(
    units: Callable[[], FakeUnitOfWork], heard: Heard, job_id: UUID, clock: FakeClock
) -> None:
    async with units() as uow:
        job = await uow.jobs.get(job_id)
        assert job is not None
        job.cancel(clock())
        await uow.jobs.update(job)
    assert heard.transitions == []


async def test_a_failed_commit_announces_nothing(
    db: FakeDatabase, units: Callable[[], FakeUnitOfWork], heard: Heard, job_id: UUID, clock: FakeClock
) -> None:
    db.fail_commit = True
    async with units() as uow:
        job = await uow.jobs.get(job_id)
        assert job is not None
        job.cancel(clock())
        await uow.jobs.update(job)
        with pytest.raises(StorageUnavailable):
            await uow.commit()
    assert heard.transitions == []


async def test_the_ledgers_claim_and_save_announce_what_each_stored(
    db: FakeDatabase, heard: Heard, job_id: UUID, clock: FakeClock
) -> None:
    ledger = PublishingJobLedger(UnitOfWorkJobLedger(lambda: FakeUnitOfWork(db)), Subscribers(heard))
    job = await ledger.claim(job_id, clock(), clock.now + timedelta(seconds=15))
    assert job is not None
    assert heard.changes == [(JobStatus.QUEUED, JobStatus.RUNNING)]
    assert await ledger.claim(job_id, clock(), clock.now) is None
    assert len(heard.transitions) == 1, "a claim that stored nothing announces nothing"
    job.fail(clock(), "REPORT_TIMEOUT", "too slow")
    await ledger.save(job)
    assert heard.changes[-1] == (JobStatus.RUNNING, JobStatus.FAILED)
    assert heard.transitions[-1].job.error is not None


async def test_a_failing_subscriber_does_not_keep_the_others_from_hearing(
    units: Callable[[], FakeUnitOfWork], heard: Heard, job_id: UUID, clock: FakeClock, db: FakeDatabase
) -> None:
    async def broken(transitions: Sequence[JobTransition]) -> None:
        raise RuntimeError("subscriber bug")

    units = publishing(lambda: FakeUnitOfWork(db), Subscribers(broken, heard))  # type: ignore[assignment]
    async with units() as uow:
        job = await uow.jobs.get(job_id)
        assert job is not None
        job.cancel(clock())
        await uow.jobs.update(job)
        await uow.commit()
    assert heard.changes == [(JobStatus.QUEUED, JobStatus.CANCELLED)]
    assert db.jobs[job_id].status is JobStatus.CANCELLED
