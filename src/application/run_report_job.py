"""The worker side: claim a Queued job, run its query into an artifact, and record how it ended."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from application.errors import ReportQueryFailed, ReportTimedOut, StorageUnavailable
from application.ports import ArtifactStore, Clock, ReportDataSource, RowEncoderFactory, UnitOfWorkFactory
from domain.errors import ConcurrentUpdate, InvalidJobTransition
from domain.jobs import ArtifactRef, ErrorCode, JobError, JobExecutionLog, JobStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """How jobs run: the query timeout, how often a transient failure is retried, how often progress is saved."""

    timeout_seconds: float = 300.0
    max_attempts: int = 3
    retry_base_delay_seconds: float = 1.0
    retry_max_delay_seconds: float = 60.0
    progress_interval_seconds: float = 1.0

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
    """Run one job, given only its id (the queue delivers at least once).

    1. Claim: Queued -> Running, guarded by the row's version, so of two deliveries only one runs it.
       A job that is not Queued is skipped.
    2. Produce the artifact outside any transaction: the query runs read-only with a timeout and its rows
       stream into a file of this attempt's own, published atomically.
    3. Record Succeeded (with the artifact) or Failed (with an error code) in a second transaction.
       A permanent error (bad SQL, write attempt, timeout) fails at once; a transient one (the database
       went away) hands the job back to the queue until `max_attempts` is reached.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        source: ReportDataSource,
        artifacts: ArtifactStore,
        encoders: Mapping[str, RowEncoderFactory],
        clock: Clock,
        policy: RunPolicy | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uow = uow
        self._source = source
        self._artifacts = artifacts
        self._encoders = encoders
        self._clock = clock
        self._policy = policy or RunPolicy()
        self._monotonic = monotonic

    async def execute(self, job_id: UUID) -> RunResult:
        job = await self._claim(job_id)
        if job is None:
            log.info("job skipped: not queued", extra={"job_id": str(job_id)})
            return RunResult(Outcome.SKIPPED)
        log.info("job started", extra=_context(job))
        result = await self._run(job)
        log.info("job %s", result.outcome.value, extra=_context(job) | {"outcome": result.outcome.value})
        return result

    async def _run(self, job: JobExecutionLog) -> RunResult:
        try:
            artifact = await self._produce(job)
        except ReportTimedOut:
            return await self._fail(
                job,
                ErrorCode.REPORT_TIMEOUT,
                f"The report query ran longer than {self._policy.timeout_seconds:g} seconds.",
            )
        except ReportQueryFailed as exc:
            return await self._fail(job, ErrorCode.REPORT_QUERY_FAILED, f"The report query failed: {exc.message}")
        except StorageUnavailable:
            return await self._retry_or_fail(job)
        except Exception:
            log.exception("job failed with an unexpected error", extra=_context(job))
            return await self._fail(
                job, ErrorCode.INTERNAL_ERROR, "The report could not be produced because of an internal error."
            )
        return await self._succeed(job, artifact)

    async def _claim(self, job_id: UUID) -> JobExecutionLog | None:
        async with self._uow() as uow:
            job = await uow.jobs.get(job_id)
            if job is None or job.status is not JobStatus.QUEUED:
                return None
            job.start(self._clock())
            try:
                await uow.jobs.update(job)
            except ConcurrentUpdate:
                return None
            await uow.commit()
        return job

    async def _produce(self, job: JobExecutionLog) -> ArtifactRef:
        encoder = self._encoders[job.format]()
        key = job.artifact_key()
        rows_written = 0
        next_report = self._monotonic() + self._policy.progress_interval_seconds
        async with (
            self._source.run(job.query, job.bindings(), self._policy.timeout_seconds) as rows,
            self._artifacts.create(key) as sink,
        ):
            await sink.write(encoder.begin(rows.columns))
            async for batch in rows.batches():
                await sink.write(encoder.encode(batch))
                rows_written += len(batch)
                if self._monotonic() >= next_report:
                    await self._save_progress(job, estimate_progress(rows_written, rows.estimated_rows))
                    next_report = self._monotonic() + self._policy.progress_interval_seconds
            await sink.write(encoder.end())
        return ArtifactRef(key, sink.size, sink.sha256)

    async def _save_progress(self, job: JobExecutionLog, percent: int) -> None:
        if not job.report_progress(percent):
            return
        try:
            async with self._uow() as uow:
                await uow.jobs.save_progress(job)
                await uow.commit()
        except StorageUnavailable:
            log.warning("progress of job %s not saved: the database is unavailable", job.id)

    async def _succeed(self, job: JobExecutionLog, artifact: ArtifactRef) -> RunResult:
        job.succeed(self._clock(), artifact)
        if await self._record(job):
            return RunResult(Outcome.SUCCEEDED, attempt=job.attempts)
        await self._artifacts.delete(artifact.key)
        return RunResult(Outcome.SKIPPED, attempt=job.attempts)

    async def _fail(self, job: JobExecutionLog, code: str, message: str) -> RunResult:
        job.fail(self._clock(), code, message)
        await self._record(job)
        return RunResult(Outcome.FAILED, attempt=job.attempts)

    async def _retry_or_fail(self, job: JobExecutionLog) -> RunResult:
        if job.attempts >= self._policy.max_attempts:
            return await self._fail(
                job,
                ErrorCode.RETRIES_EXHAUSTED,
                f"The reporting database was unavailable in all {job.attempts} attempts.",
            )
        job.requeue(JobError(ErrorCode.REPORT_QUERY_FAILED, "The reporting database was unavailable; retrying."))
        await self._record(job)
        return RunResult(Outcome.RETRY, self._policy.retry_delay(job.attempts), attempt=job.attempts)

    async def _record(self, job: JobExecutionLog) -> bool:
        """Save a transition; False when another writer (a duplicate delivery, a cancel) got there first."""
        try:
            async with self._uow() as uow:
                await uow.jobs.update(job)
                await uow.commit()
        except (ConcurrentUpdate, InvalidJobTransition):
            log.info("job %s was changed by another writer; this attempt's outcome is dropped", job.id)
            return False
        return True
