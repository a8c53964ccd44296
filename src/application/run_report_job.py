"""The worker side: claim a Queued job, run its query into an artifact, and record how it ended."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from uuid import UUID

from application.errors import (
    ArtifactStoreUnavailable,
    QueueUnavailable,
    ReportOutputFailed,
    ReportQueryFailed,
    ReportTimedOut,
    StorageUnavailable,
)
from application.heartbeat import Heartbeat, LeaseLost
from application.ports import (
    ArtifactLabel,
    ArtifactStore,
    Clock,
    JobLedger,
    JobQueue,
    RenderContext,
    ReportDataSource,
    RowEncoder,
    RowEncoderFactory,
)
from domain.errors import ConcurrentUpdate, InvalidJobTransition
from domain.jobs import ArtifactRef, ErrorCode, JobError, JobExecutionLog, JobStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """How jobs run: query timeout, retries of transient failures, the lease and how often it is renewed."""

    timeout_seconds: float = 300.0
    max_attempts: int = 3
    retry_base_delay_seconds: float = 1.0
    retry_max_delay_seconds: float = 60.0
    lease_seconds: float = 15.0
    """How long a worker may go silent before its job is presumed lost and run again."""
    heartbeat_seconds: float = 1.0
    """How often a running job's lease is renewed and its progress saved (well below lease_seconds)."""
    result_ttl_seconds: float | None = 86_400.0
    """How long a Succeeded job's artifact is kept; None keeps it forever."""

    def retry_delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        ceiling = min(self.retry_max_delay_seconds, self.retry_base_delay_seconds * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class RunResult:
    outcome: Outcome
    retry_in_seconds: float = 0.0
    attempt: int = 0


JobHandler = Callable[[UUID], Awaitable[RunResult]]
"""What a queue calls with each delivered job id: RunReportJob.execute, or a wrapper of it."""


def _context(job: JobExecutionLog) -> dict[str, object]:
    """What every log line about a job carries, so one grep of the request id tells its whole story."""
    fields: dict[str, object] = {
        "job_id": str(job.id),
        "report_id": str(job.report_id),
        "attempt": job.attempts,
        "status": job.status.value,
        "request_id": job.request_id,
    }
    if job.error is not None:
        fields["error_code"] = job.error.code
    return fields


def estimate_progress(rows: int, estimated_rows: int | None) -> int:
    """A progress figure that rises with the rows written and stays below 100 until the job succeeds."""
    if estimated_rows:
        return min(99, 5 + rows * 94 // estimated_rows)
    return 5 + 90 * rows // (rows + 50_000)


class RunReportJob:
    """Run one job, given only its id (the queue delivers at least once, perhaps to two workers at once).

    1. Claim: Queued -> Running with a lease, in one write that only a Queued row accepts, so of two deliveries
       only one runs it. A Running job whose lease expired (its worker died) is taken over as a new attempt, or
       failed with WORKER_LOST once it has had `max_attempts`. Anything else is skipped.
    2. Produce the artifact outside any transaction, renewing the lease meanwhile: the query runs read-only
       with a timeout and its rows stream into a file of this attempt's own, published atomically (or, for a
       small artifact that the store leaves to the ledger, kept in memory: `ArtifactRef.content`).
    3. Record Succeeded (with the artifact, and its content if the store left it) or Failed (with an error code)
       in a second write, guarded by the version: if the job was cancelled or taken over meanwhile, this attempt's
       outcome is dropped, a small artifact's content with it.
       A permanent error (bad SQL, write attempt, timeout) fails at once; a transient one (the database
       went away) hands the job back to the queue with backoff until `max_attempts` is reached. A worker
       that is stopped (cancelled) mid-job hands it back too.

    Each of these writes stands alone (the job ledger commits it at once): no transaction spans two of them.
    """

    def __init__(
        self,
        ledger: JobLedger,
        source: ReportDataSource,
        artifacts: ArtifactStore,
        encoders: Mapping[str, RowEncoderFactory],
        queue: JobQueue,
        clock: Clock,
        policy: RunPolicy | None = None,
    ) -> None:
        self._ledger = ledger
        self._source = source
        self._artifacts = artifacts
        self._encoders = encoders
        self._queue = queue
        self._clock = clock
        self._policy = policy or RunPolicy()
        self._heartbeat = Heartbeat(
            self._ledger,
            clock,
            lease_seconds=self._policy.lease_seconds,
            interval_seconds=self._policy.heartbeat_seconds,
        )

    async def execute(self, job_id: UUID) -> RunResult:
        job = await self._claim(job_id)
        if job is None:
            log.info("job skipped: not claimable", extra={"job_id": str(job_id)})
            return RunResult(Outcome.SKIPPED)
        log.info("job started", extra=_context(job))
        started = time.monotonic()
        try:
            result = await self._run(job)
        except asyncio.CancelledError:
            await asyncio.shield(self._hand_back(job))
            raise
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        log.info(
            "job %s",
            result.outcome.value,
            extra=_context(job) | {"outcome": result.outcome.value, "duration_ms": duration_ms},
        )
        return result

    async def _run(self, job: JobExecutionLog) -> RunResult:
        try:
            artifact = await self._heartbeat.run(job, self._produce(job))
        except LeaseLost:
            return RunResult(Outcome.SKIPPED, attempt=job.attempts)
        except ReportTimedOut:
            return await self._fail(
                job,
                ErrorCode.REPORT_TIMEOUT,
                f"The report query ran longer than {self._policy.timeout_seconds:g} seconds.",
            )
        except ReportQueryFailed as exc:
            message = f"The report query failed: {exc.message}"
            return await self._fail(job, ErrorCode.REPORT_QUERY_FAILED, message, exc.detail)
        except ReportOutputFailed as exc:
            return await self._fail(job, exc.code, exc.message)
        except StorageUnavailable:
            return await self._retry_or_fail(job, ErrorCode.REPORT_QUERY_FAILED, "reporting database")
        except ArtifactStoreUnavailable:
            return await self._retry_or_fail(job, ErrorCode.ARTIFACT_STORE_UNAVAILABLE, "artifact store")
        except Exception:
            log.exception("job failed with an unexpected error", extra=_context(job))
            return await self._fail(
                job, ErrorCode.INTERNAL_ERROR, "The report could not be produced because of an internal error."
            )
        return await self._succeed(job, artifact)

    async def _claim(self, job_id: UUID) -> JobExecutionLog | None:
        now = self._clock()
        job = await self._ledger.claim(job_id, now, now + timedelta(seconds=self._policy.lease_seconds))
        if job is not None:  # the usual case: a Queued job, claimed in one write
            return job
        job = await self._ledger.get(job_id)  # a duplicate delivery, or a job whose worker was lost
        if job is None or not self._take(job):
            return None
        try:
            await self._ledger.save(job)
        except ConcurrentUpdate:
            return None
        return job if job.status is JobStatus.RUNNING else None

    def _take(self, job: JobExecutionLog) -> bool:
        """Move a claimable job to Running in memory (or to Failed when its lost worker used the last attempt)."""
        now = self._clock()
        if job.status is JobStatus.RUNNING:
            if not job.lease_expired(now):
                return False
            job.release_from_lost_worker(now, self._policy.max_attempts)
            if job.is_terminal:  # failed WORKER_LOST: that is what gets saved
                return True
        if job.status is not JobStatus.QUEUED:
            return False
        job.start(now, now + timedelta(seconds=self._policy.lease_seconds))
        return True

    async def _produce(self, job: JobExecutionLog) -> ArtifactRef:
        encoder = self._encoder(job)
        rows_written = 0
        try:
            async with (
                self._source.run(job.query, job.bindings(), self._policy.timeout_seconds) as rows,
                self._artifacts.create(job.artifact_key(), ArtifactLabel(job.content_type, job.filename)) as sink,
            ):

                async def write(data: bytes, rows_in_data: int) -> None:
                    nonlocal rows_written
                    await sink.write(data)
                    rows_written += rows_in_data
                    job.report_progress(estimate_progress(rows_written, rows.estimated_rows))

                await sink.write(encoder.begin(rows.columns))
                await rows.encode(encoder, write)
                async for chunk in encoder.end():
                    await sink.write(chunk)
        finally:
            encoder.close()
        return ArtifactRef(job.artifact_key(), sink.size, sink.sha256, sink.content)

    def _encoder(self, job: JobExecutionLog) -> RowEncoder:
        factory = self._encoders.get(job.format)
        if factory is None:  # a format whose optional library this worker lacks (the API refuses it where it knows)
            raise ReportOutputFailed(
                ErrorCode.FORMAT_UNAVAILABLE, f"The {job.format} format is not installed on the worker that ran it."
            )
        return factory(RenderContext.of(job, self._clock()))

    async def _succeed(self, job: JobExecutionLog, artifact: ArtifactRef) -> RunResult:
        now = self._clock()
        ttl = self._policy.result_ttl_seconds
        job.succeed(now, artifact, None if ttl is None else now + timedelta(seconds=ttl))
        if await self._record(job):
            return RunResult(Outcome.SUCCEEDED, attempt=job.attempts)
        await self._artifacts.delete(artifact.key)
        return RunResult(Outcome.SKIPPED, attempt=job.attempts)

    async def _fail(self, job: JobExecutionLog, code: str, message: str, detail: str | None = None) -> RunResult:
        job.fail(self._clock(), code, message, detail)
        outcome = Outcome.FAILED if await self._record(job) else Outcome.SKIPPED
        return RunResult(outcome, attempt=job.attempts)

    async def _retry_or_fail(self, job: JobExecutionLog, code: ErrorCode, unavailable: str) -> RunResult:
        """`unavailable` names what was down (the reporting database, the artifact store) in the job's error; `code`
        is the error's code while the job waits for its next attempt."""
        if job.attempts >= self._policy.max_attempts:
            return await self._fail(
                job,
                ErrorCode.RETRIES_EXHAUSTED,
                f"The {unavailable} was unavailable in all {job.attempts} attempts.",
            )
        delay = self._policy.retry_delay(job.attempts)
        job.requeue(JobError(code, f"The {unavailable} was unavailable; retrying."))
        if await self._record(job):
            await self._enqueue_next(job, delay)
        return RunResult(Outcome.RETRY, delay, attempt=job.attempts)

    async def _hand_back(self, job: JobExecutionLog) -> None:
        """The worker is stopping mid-job: give the job back to the queue rather than lose or fail it."""
        if job.status is not JobStatus.RUNNING:
            return
        job.requeue(JobError(ErrorCode.WORKER_STOPPED, "The worker stopped while running the report; retrying."))
        try:
            if await self._record(job):
                await self._enqueue_next(job, 0)
                log.info("job handed back to the queue", extra=_context(job))
        except StorageUnavailable:
            log.warning("job %s not handed back: the database is unavailable; its lease will expire", job.id)

    async def _enqueue_next(self, job: JobExecutionLog, delay: float) -> None:
        try:
            await self._queue.enqueue(job.id, attempt=job.attempts + 1, delay_seconds=delay)
        except QueueUnavailable:
            log.warning("job %s requeued but not enqueued: the reconciler will enqueue it", job.id)

    async def _record(self, job: JobExecutionLog) -> bool:
        """Save a transition; False when another writer (a duplicate delivery, a cancel) got there first."""
        try:
            await self._ledger.save(job)
        except (ConcurrentUpdate, InvalidJobTransition):
            log.info("job %s was changed by another writer; this attempt's outcome is dropped", job.id)
            return False
        return True
