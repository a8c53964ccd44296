"""Recovery at start of the single-process (embedded) mode: no job is left Queued or Running with nobody on it."""

from __future__ import annotations

import logging

from application.ports import Clock, JobQueue, UnitOfWorkFactory
from domain.errors import ConcurrentUpdate
from domain.jobs import ErrorCode, JobError, JobExecutionLog, JobStatus

log = logging.getLogger(__name__)


class RecoverUnfinishedJobs:
    """Hand every unfinished job back to the queue; one that was Running when the process stopped is retried,
    or failed with WORKER_LOST once it has used all its attempts.

    Only for a deployment with a single worker process (the embedded mode), where at start no other worker
    can be running anything: there every Running job is an orphan of the previous run.
    """

    def __init__(self, uow: UnitOfWorkFactory, queue: JobQueue, clock: Clock, max_attempts: int) -> None:
        self._uow = uow
        self._queue = queue
        self._clock = clock
        self._max_attempts = max_attempts

    async def execute(self, limit: int = 10_000) -> int:
        async with self._uow() as uow:
            jobs = await uow.jobs.list_unfinished(limit)
        requeued = 0
        for job in jobs:
            if job.status is JobStatus.RUNNING and not await self._release(job):
                continue
            await self._queue.enqueue(job.id, attempt=job.attempts + 1)
            requeued += 1
        if requeued:
            log.info("recovered %d unfinished jobs", requeued)
        return requeued

    async def _release(self, job: JobExecutionLog) -> bool:
        if job.attempts >= self._max_attempts:
            job.fail(
                self._clock(),
                ErrorCode.WORKER_LOST,
                f"The worker stopped while running the report, in all {job.attempts} attempts.",
            )
        else:
            job.requeue(JobError(ErrorCode.WORKER_LOST, "The worker stopped while running the report; retrying."))
        try:
            async with self._uow() as uow:
                await uow.jobs.update(job)
                await uow.commit()
        except ConcurrentUpdate:
            return False
        return job.status is JobStatus.QUEUED
