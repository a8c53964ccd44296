from collections.abc import Callable
from uuid import UUID

import pytest

from application.errors import ReportQueryFailed, ReportTimedOut, StorageUnavailable
from application.run_report_job import Outcome, RunPolicy, RunReportJob, estimate_progress
from domain.jobs import ErrorCode, JobStatus
from tests.fakes import (
    FakeArtifactStore,
    FakeClock,
    FakeDatabase,
    FakeReportDataSource,
    FakeUnitOfWork,
    LinesEncoder,
)


class Ticker:
    """A monotonic clock that moves one second per reading, so every batch is due a progress report."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def source() -> FakeReportDataSource:
    return FakeReportDataSource(columns=("region", "n"), rows=[("EU", i) for i in range(5)])


@pytest.fixture
def store() -> FakeArtifactStore:
    return FakeArtifactStore()


@pytest.fixture
def run(
    uow: Callable[[], FakeUnitOfWork], source: FakeReportDataSource, store: FakeArtifactStore, clock: FakeClock
) -> RunReportJob:
    return RunReportJob(uow, source, store, {"csv": LinesEncoder}, clock, RunPolicy(max_attempts=2), monotonic=Ticker())


async def test_job_runs_its_query_into_an_artifact_and_succeeds(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, store: FakeArtifactStore, source: FakeReportDataSource
) -> None:
    result = await run.execute(job_id)
    job = db.jobs[job_id]
    assert result.outcome is Outcome.SUCCEEDED
    assert (job.status, job.progress, job.attempts) == (JobStatus.SUCCEEDED, 100, 1)
    assert job.artifact is not None
    assert store.files[job.artifact.key] == b"region,n\nEU,0\nEU,1\nEU,2\nEU,3\nEU,4\n"
    assert job.artifact.size == len(store.files[job.artifact.key])
    assert [(b.name, b.value) for b in source.calls[0][1]] == [("region", "EU")]


async def test_progress_is_saved_while_running(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource
) -> None:
    seen: list[int] = []
    original = FakeUnitOfWork.commit

    async def spy(self: FakeUnitOfWork) -> None:
        await original(self)
        seen.append(db.jobs[job_id].progress)

    FakeUnitOfWork.commit = spy  # type: ignore[method-assign]
    try:
        await run.execute(job_id)
    finally:
        FakeUnitOfWork.commit = original  # type: ignore[method-assign]
    assert seen == sorted(seen), "progress never goes down"
    assert any(0 < p < 100 for p in seen), "some progress was reported before the end"
    assert seen[-1] == 100


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ReportQueryFailed("division by zero"), ErrorCode.REPORT_QUERY_FAILED),
        (ReportTimedOut(), ErrorCode.REPORT_TIMEOUT),
        (RuntimeError("boom at 0xdeadbeef"), ErrorCode.INTERNAL_ERROR),
    ],
)
async def test_permanent_errors_fail_the_job_at_once_with_a_code(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource, error: Exception, code: str
) -> None:
    source.error = error
    result = await run.execute(job_id)
    job = db.jobs[job_id]
    assert result.outcome is Outcome.FAILED
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == code
    assert "0xdeadbeef" not in job.error.message


async def test_error_midway_publishes_no_artifact(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource, store: FakeArtifactStore
) -> None:
    source.error_after_rows = ReportQueryFailed("division by zero")
    await run.execute(job_id)
    assert db.jobs[job_id].status is JobStatus.FAILED
    assert store.files == {}


async def test_transient_error_requeues_until_attempts_run_out(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource
) -> None:
    source.error = StorageUnavailable("reporting database went away")
    first = await run.execute(job_id)
    assert first.outcome is Outcome.RETRY
    assert first.retry_in_seconds > 0
    assert (db.jobs[job_id].status, db.jobs[job_id].attempts) == (JobStatus.QUEUED, 1)
    second = await run.execute(job_id)
    job = db.jobs[job_id]
    assert second.outcome is Outcome.FAILED
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)
    assert job.error is not None
    assert job.error.code == ErrorCode.RETRIES_EXHAUSTED


async def test_transient_error_then_success(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource
) -> None:
    source.error = StorageUnavailable("blip")
    await run.execute(job_id)
    source.error = None
    assert (await run.execute(job_id)).outcome is Outcome.SUCCEEDED
    assert (db.jobs[job_id].attempts, db.jobs[job_id].error) == (2, None)


async def test_duplicate_delivery_of_a_finished_job_is_skipped(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource
) -> None:
    await run.execute(job_id)
    assert (await run.execute(job_id)).outcome is Outcome.SKIPPED
    assert len(source.calls) == 1
    assert db.jobs[job_id].attempts == 1


async def test_attempt_that_loses_the_race_drops_its_artifact(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, store: FakeArtifactStore, clock: FakeClock
) -> None:
    class CancelledMidway(FakeReportDataSource):
        def run(self, query, bindings, timeout_seconds):  # type: ignore[no-untyped-def]
            db.jobs[job_id].cancel(clock())
            db.jobs[job_id].version += 1
            return super().run(query, bindings, timeout_seconds)

    racer = RunReportJob(lambda: FakeUnitOfWork(db), CancelledMidway(), store, {"csv": LinesEncoder}, clock)
    assert (await racer.execute(job_id)).outcome is Outcome.SKIPPED
    assert db.jobs[job_id].status is JobStatus.CANCELLED
    assert store.files == {}


async def test_database_down_at_claim_propagates_for_the_queue_to_retry(
    run: RunReportJob, job_id: UUID, db: FakeDatabase
) -> None:
    db.unavailable = True
    with pytest.raises(StorageUnavailable):
        await run.execute(job_id)


def test_progress_estimate_rises_and_stays_below_100() -> None:
    values = [estimate_progress(rows, None) for rows in (0, 10, 1000, 10**6, 10**9)]
    assert values == sorted(values)
    assert values[-1] < 100
    assert estimate_progress(50, 100) == 52
    assert estimate_progress(500, 100) == 99
