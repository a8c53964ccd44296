import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from uuid import UUID

import pytest

from application.errors import ReportOutputFailed, ReportQueryFailed, ReportTimedOut, StorageUnavailable
from application.job_ledger import UnitOfWorkJobLedger
from application.ports import RenderContext, Row, RowEncoderFactory, RowStream
from application.run_report_job import Outcome, RunPolicy, RunReportJob, RunResult, estimate_progress
from domain.jobs import ArtifactRef, ErrorCode, JobStatus
from domain.reports import Binding
from tests.fakes import (
    FakeArtifactStore,
    FakeClock,
    FakeDatabase,
    FakeJobQueue,
    FakeReportDataSource,
    FakeRowStream,
    FakeUnitOfWork,
    LinesEncoder,
)

POLICY = RunPolicy(max_attempts=2, lease_seconds=15, heartbeat_seconds=0.01)
POLICY_LEASE = timedelta(seconds=POLICY.lease_seconds)


def _artifact() -> ArtifactRef:
    return ArtifactRef("k", 1, "sha")


class SlowSource(FakeReportDataSource):
    """Yields one row per `pause` seconds, so that heartbeats happen while the job runs."""

    def __init__(self, rows: int = 20, pause: float = 0.005) -> None:
        super().__init__(columns=("n",), rows=[(i,) for i in range(rows)])
        self.pause = pause
        self.started = asyncio.Event()

    def run(
        self, query: str, bindings: Sequence[Binding], timeout_seconds: float
    ) -> AbstractAsyncContextManager[RowStream]:
        return self._slow()

    @asynccontextmanager
    async def _slow(self) -> AsyncIterator[RowStream]:
        source = self

        class Stream(FakeRowStream):
            async def batches(self) -> AsyncIterator[Sequence[Sequence[object]]]:
                source.started.set()
                for row in self.rows:
                    await asyncio.sleep(source.pause)
                    yield [row]

        yield Stream(self.columns, self.rows, estimated_rows=len(self.rows))


@pytest.fixture
def source() -> FakeReportDataSource:
    return FakeReportDataSource(columns=("region", "n"), rows=[("EU", i) for i in range(5)])


@pytest.fixture
def store() -> FakeArtifactStore:
    return FakeArtifactStore()


def runner(
    uow: Callable[[], FakeUnitOfWork],
    source: FakeReportDataSource,
    store: FakeArtifactStore,
    queue: FakeJobQueue,
    clock: FakeClock,
    policy: RunPolicy = POLICY,
    encoders: Mapping[str, RowEncoderFactory] | None = None,
) -> RunReportJob:
    encoders = {"csv": LinesEncoder} if encoders is None else encoders
    return RunReportJob(UnitOfWorkJobLedger(uow), source, store, encoders, queue, clock, policy)


@pytest.fixture
def run(
    uow: Callable[[], FakeUnitOfWork],
    source: FakeReportDataSource,
    store: FakeArtifactStore,
    queue: FakeJobQueue,
    clock: FakeClock,
) -> RunReportJob:
    return runner(uow, source, store, queue, clock)


async def test_job_runs_its_query_into_an_artifact_and_succeeds(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, store: FakeArtifactStore, source: FakeReportDataSource
) -> None:
    result = await run.execute(job_id)
    job = db.jobs[job_id]
    assert result.outcome is Outcome.SUCCEEDED
    assert (job.status, job.progress, job.attempts, job.lease_expires_at) == (JobStatus.SUCCEEDED, 100, 1, None)
    assert job.artifact is not None
    # The encoder was made for this job: its last line is the report's name, from the job's render context.
    assert store.files[job.artifact.key] == b"region,n\nEU,0\nEU,1\nEU,2\nEU,3\nEU,4\n# Sales\n"
    assert job.artifact.size == len(store.files[job.artifact.key])
    assert job.expires_at is not None
    assert job.finished_at is not None
    assert (job.expires_at - job.finished_at).total_seconds() == POLICY.result_ttl_seconds
    assert [(b.name, b.value) for b in source.calls[0][1]] == [("region", "EU")]


async def test_an_artifact_the_store_leaves_to_the_ledger_is_saved_with_the_success(
    uow: Callable[[], FakeUnitOfWork],
    job_id: UUID,
    db: FakeDatabase,
    source: FakeReportDataSource,
    queue: FakeJobQueue,
    clock: FakeClock,
) -> None:
    store = FakeArtifactStore(small_to_the_ledger=True)

    result = await runner(uow, source, store, queue, clock).execute(job_id)

    job = db.jobs[job_id]
    assert (result.outcome, job.status) == (Outcome.SUCCEEDED, JobStatus.SUCCEEDED)
    assert job.artifact is not None
    assert job.artifact.content == b"region,n\nEU,0\nEU,1\nEU,2\nEU,3\nEU,4\n# Sales\n"
    assert (job.artifact.size, job.artifact.sha256) == (
        len(job.artifact.content),
        hashlib.sha256(job.artifact.content).hexdigest(),
    )
    assert store.files == {}


async def test_progress_and_lease_are_saved_by_the_heartbeat_while_running(
    uow: Callable[[], FakeUnitOfWork],
    job_id: UUID,
    db: FakeDatabase,
    store: FakeArtifactStore,
    queue: FakeJobQueue,
    clock: FakeClock,
) -> None:
    source = SlowSource(rows=30)
    seen: list[int] = []

    async def watch() -> None:
        await source.started.wait()
        while db.jobs[job_id].status is JobStatus.RUNNING:
            seen.append(db.jobs[job_id].progress)
            assert db.jobs[job_id].lease_expires_at is not None
            await asyncio.sleep(0.003)

    watcher = asyncio.create_task(watch())
    await runner(uow, source, store, queue, clock).execute(job_id)
    await watcher
    assert seen == sorted(seen), "progress never goes down"
    assert any(0 < p < 100 for p in seen), "progress was saved before the end"
    assert db.jobs[job_id].progress == 100


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


async def test_a_failed_query_keeps_the_database_message_apart_from_the_owners_message(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource
) -> None:
    source.error = ReportQueryFailed("check the parameters you sent", detail='column "salary" is secret')

    await run.execute(job_id)

    error = db.jobs[job_id].error
    assert error is not None
    assert error.message == "The report query failed: check the parameters you sent"
    assert error.detail == 'column "salary" is secret'


class RefusingEncoder(LinesEncoder):
    """Refuses the rows at the second batch, as a Parquet column that changes type does; records its close."""

    closed = 0

    def __init__(self, context: RenderContext) -> None:
        super().__init__(context)
        self.batches_seen = 0

    def encode(self, rows: Sequence[Row]) -> bytes:
        if self.batches_seen == 1:
            raise ReportOutputFailed(ErrorCode.OUTPUT_FAILED, "Column 'n' holds values of more than one type.")
        self.batches_seen += 1
        return super().encode(rows)

    def close(self) -> None:
        RefusingEncoder.closed += 1


async def test_rows_the_format_cannot_hold_fail_the_job_with_the_encoders_code_and_no_artifact(
    uow: Callable[[], FakeUnitOfWork],
    job_id: UUID,
    db: FakeDatabase,
    store: FakeArtifactStore,
    queue: FakeJobQueue,
    clock: FakeClock,
) -> None:
    source = FakeReportDataSource(columns=("n",), rows=[(i,) for i in range(5)])
    run = runner(uow, source, store, queue, clock, encoders={"csv": RefusingEncoder})
    RefusingEncoder.closed = 0

    result = await run.execute(job_id)

    job = db.jobs[job_id]
    assert result.outcome is Outcome.FAILED
    assert job.error is not None
    assert (job.error.code, job.error.message) == (
        ErrorCode.OUTPUT_FAILED,
        "Column 'n' holds values of more than one type.",
    )
    assert store.files == {}
    assert RefusingEncoder.closed == 1, "the encoder is closed when it fails too"


async def test_a_format_this_worker_has_no_encoder_for_fails_the_job_saying_so(
    uow: Callable[[], FakeUnitOfWork],
    job_id: UUID,
    db: FakeDatabase,
    source: FakeReportDataSource,
    store: FakeArtifactStore,
    queue: FakeJobQueue,
    clock: FakeClock,
) -> None:
    run = runner(uow, source, store, queue, clock, encoders={"json": LinesEncoder})

    await run.execute(job_id)

    error = db.jobs[job_id].error
    assert error is not None
    assert error.code == ErrorCode.FORMAT_UNAVAILABLE
    assert error.message == "The csv format is not installed on the worker that ran it."


async def test_error_midway_publishes_no_artifact(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource, store: FakeArtifactStore
) -> None:
    source.error_after_rows = ReportQueryFailed("division by zero")
    await run.execute(job_id)
    assert db.jobs[job_id].status is JobStatus.FAILED
    assert store.files == {}


async def test_transient_error_hands_the_job_back_and_enqueues_the_next_attempt_with_backoff(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource, queue: FakeJobQueue
) -> None:
    source.error = StorageUnavailable("reporting database went away")
    first = await run.execute(job_id)
    assert first.outcome is Outcome.RETRY
    assert (db.jobs[job_id].status, db.jobs[job_id].attempts) == (JobStatus.QUEUED, 1)
    (_, attempt, delay) = queue.deliveries[-1]
    assert (attempt, delay > 0) == (2, True)
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


async def test_duplicate_delivery_of_a_running_or_finished_job_is_skipped(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, source: FakeReportDataSource, clock: FakeClock
) -> None:
    db.jobs[job_id].start(clock(), clock.now + POLICY_LEASE)
    assert (await run.execute(job_id)).outcome is Outcome.SKIPPED, "a Running job with a live lease is someone's"
    db.jobs[job_id].succeed(clock(), db.jobs[job_id].artifact or _artifact())
    assert (await run.execute(job_id)).outcome is Outcome.SKIPPED
    assert source.calls == []


async def test_running_job_whose_lease_expired_is_taken_over_as_a_new_attempt(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, clock: FakeClock
) -> None:
    db.jobs[job_id].start(clock(), clock.now + POLICY_LEASE)
    clock.advance(POLICY_LEASE.total_seconds())
    assert (await run.execute(job_id)).outcome is Outcome.SUCCEEDED
    assert db.jobs[job_id].attempts == 2


async def test_lost_worker_in_the_last_attempt_fails_the_job_worker_lost(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, clock: FakeClock
) -> None:
    job = db.jobs[job_id]
    job.start(clock(), clock.now)
    job.attempts = POLICY.max_attempts
    clock.advance(1)
    assert (await run.execute(job_id)).outcome is Outcome.SKIPPED
    lost = db.jobs[job_id]
    assert lost.status is JobStatus.FAILED
    assert lost.error is not None
    assert lost.error.code == ErrorCode.WORKER_LOST


@pytest.fixture
async def running(
    uow: Callable[[], FakeUnitOfWork],
    job_id: UUID,
    store: FakeArtifactStore,
    queue: FakeJobQueue,
    clock: FakeClock,
) -> AsyncIterator[asyncio.Task[RunResult]]:
    """The job running on a slow source, past its first row."""
    source = SlowSource(rows=10_000, pause=0.001)
    task = asyncio.create_task(runner(uow, source, store, queue, clock).execute(job_id))
    await source.started.wait()
    yield task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_job_cancelled_while_running_stops_at_the_next_heartbeat_without_a_result(
    running: asyncio.Task[RunResult], job_id: UUID, db: FakeDatabase, store: FakeArtifactStore, clock: FakeClock
) -> None:
    task = running
    db.jobs[job_id].cancel(clock())
    db.jobs[job_id].version += 1
    result = await asyncio.wait_for(task, timeout=2)
    assert result.outcome is Outcome.SKIPPED
    assert db.jobs[job_id].status is JobStatus.CANCELLED
    assert store.files == {}


async def test_worker_stopped_mid_job_hands_it_back_to_the_queue(
    running: asyncio.Task[RunResult], job_id: UUID, db: FakeDatabase, store: FakeArtifactStore, queue: FakeJobQueue
) -> None:
    task = running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    job = db.jobs[job_id]
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert job.error is not None
    assert job.error.code == ErrorCode.WORKER_STOPPED
    assert queue.deliveries[-1][:2] == (job_id, 2)
    assert store.files == {}


async def test_attempt_that_loses_the_race_drops_its_artifact(
    job_id: UUID, db: FakeDatabase, store: FakeArtifactStore, queue: FakeJobQueue, clock: FakeClock
) -> None:
    class TakenOverMidway(FakeReportDataSource):
        def run(
            self, query: str, bindings: Sequence[Binding], timeout_seconds: float
        ) -> AbstractAsyncContextManager[RowStream]:
            db.jobs[job_id].version += 1  # another attempt's write
            return super().run(query, bindings, timeout_seconds)

    racer = runner(lambda: FakeUnitOfWork(db), TakenOverMidway(), store, queue, clock)
    assert (await racer.execute(job_id)).outcome is Outcome.SKIPPED
    assert db.jobs[job_id].status is JobStatus.RUNNING
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


async def test_artifact_store_down_retries_the_job_and_names_the_store_when_attempts_run_out(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, store: FakeArtifactStore, queue: FakeJobQueue
) -> None:
    store.unavailable = True
    first = await run.execute(job_id)
    job = db.jobs[job_id]
    assert first.outcome is Outcome.RETRY
    assert job.status is JobStatus.QUEUED
    assert job.error is not None
    assert (job.error.code, job.error.message) == (
        ErrorCode.ARTIFACT_STORE_UNAVAILABLE,
        "The artifact store was unavailable; retrying.",
    )
    assert queue.deliveries[-1][1] == 2
    second = await run.execute(job_id)
    job = db.jobs[job_id]
    assert second.outcome is Outcome.FAILED
    assert job.error is not None
    assert (job.error.code, job.error.message) == (
        ErrorCode.RETRIES_EXHAUSTED,
        "The artifact store was unavailable in all 2 attempts.",
    )


async def test_the_artifact_is_labelled_with_the_jobs_media_type_and_file_name(
    run: RunReportJob, job_id: UUID, db: FakeDatabase, store: FakeArtifactStore
) -> None:
    await run.execute(job_id)
    job = db.jobs[job_id]
    assert job.artifact is not None
    label = store.labels[job.artifact.key]
    assert label is not None
    assert (label.media_type, label.filename) == (job.content_type, job.filename)
