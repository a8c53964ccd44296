"""Periodic repair: no job is left Queued with nothing in the queue, or Running with a dead worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from application.errors import QueueUnavailable
from application.ports import Clock, JobQueue, UnitOfWorkFactory
from domain.errors import ConcurrentUpdate
from domain.jobs import JobExecutionLog, JobStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reconciled:
    enqueued: int = 0
    """Queued jobs handed to the queue again (a no-op for those it still holds)."""
    requeued: int = 0
    """Running jobs whose worker was lost, handed back to the queue."""
    failed: int = 0
    """Running jobs whose worker was lost in their last allowed attempt, failed with WORKER_LOST."""


class ReconcileJobs:
    """Repair what a lost queue or a lost worker left behind; safe to run often and from several workers.

    - Every Queued job older than `queued_grace_seconds` is enqueued again for its next attempt. The queue
      is idempotent per attempt, so a job it still holds is not duplicated, and one lost with Redis's data
      (a flush, a restart without persistence) is delivered again.
    - Every Running job whose lease expired is handed back to the queue as a new attempt, or failed with
      WORKER_LOST once it has used `max_attempts`. With `orphan_running` (at start of the single-process
      embedded mode, where no other worker can exist) every Running job counts as expired.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        queue: JobQueue,
        clock: Clock,
        *,
        max_attempts: int,
        queued_grace_seconds: float = 5,
    ) -> None:
        self._uow = uow
        self._queue = queue
        self._clock = clock
        self._max_attempts = max_attempts
        self._grace = timedelta(seconds=queued_grace_seconds)

    async def execute(self, *, orphan_running: bool = False, limit: int = 1000) -> Reconciled:
        async with self._uow() as uow:
            jobs = await uow.jobs.list_unfinished(limit)
        now = self._clock()
        enqueued = requeued = failed = 0
        for job in jobs:
            if job.status is JobStatus.RUNNING and (orphan_running or job.lease_expired(now)):
                released = await self._release(job)
                failed += released is JobStatus.FAILED
                if released is not JobStatus.QUEUED:
                    continue
                requeued += 1
            elif job.status is not JobStatus.QUEUED or now - job.created_at < self._grace:
                continue
            enqueued += await self._enqueue(job)
        result = Reconciled(enqueued, requeued, failed)
        if requeued or failed:
            log.info("reconciled jobs", extra={"enqueued": enqueued, "requeued": requeued, "failed": failed})
        return result

    async def _release(self, job: JobExecutionLog) -> JobStatus | None:
        """Requeue or fail a job whose worker is gone; its new status, or None if another writer got there first."""
        job.release_from_lost_worker(self._clock(), self._max_attempts)
        try:
            async with self._uow() as uow:
                await uow.jobs.update(job)
                await uow.commit()
        except ConcurrentUpdate:
            return None
        return job.status

    async def _enqueue(self, job: JobExecutionLog) -> int:
        try:
            await self._queue.enqueue(job.id, attempt=job.attempts + 1)
        except QueueUnavailable:
            log.warning("reconciler could not enqueue job %s: the queue is unavailable", job.id)
            return 0
        return 1
