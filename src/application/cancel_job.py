"""Cancel a job: a Queued one at once; a Running one is aborted and its worker stops within seconds."""

from __future__ import annotations

import logging

from application.errors import QueueUnavailable
from application.job_queries import JobQuery, visible_job
from application.ports import Clock, JobQueue, UnitOfWorkFactory
from domain.errors import ConcurrentUpdate, JobAlreadyFinished, JobNotFound
from domain.jobs import JobExecutionLog, JobStatus

log = logging.getLogger(__name__)
_RACE_RETRIES = 3


class CancelJob:
    """Move a Queued or Running job to Cancelled; a finished job cannot be cancelled (JobAlreadyFinished).

    A Running job's worker notices at its next heartbeat (about a second) and stops without recording a
    result; the queue is also asked to abort the attempt at once. A cancelled job never has a result.
    """

    def __init__(self, uow: UnitOfWorkFactory, queue: JobQueue, clock: Clock) -> None:
        self._uow = uow
        self._queue = queue
        self._clock = clock

    async def execute(self, query: JobQuery) -> JobExecutionLog:
        for _ in range(_RACE_RETRIES):
            try:
                job, was_running = await self._cancel(query)
            except ConcurrentUpdate:
                continue  # a worker moved the job meanwhile: look again
            if was_running:
                await self._abort(job)
            return job
        raise ConcurrentUpdate(query.job_id)

    async def _cancel(self, query: JobQuery) -> tuple[JobExecutionLog, bool]:
        async with self._uow() as uow:
            job = await uow.jobs.get(query.job_id)
            if job is None:
                raise JobNotFound(query.job_id)
            visible_job(job, query)
            if job.is_terminal:
                raise JobAlreadyFinished(job.id, job.status.value)
            was_running = job.status is JobStatus.RUNNING
            job.cancel(self._clock())
            await uow.jobs.update(job)
            await uow.commit()
        return job, was_running

    async def _abort(self, job: JobExecutionLog) -> None:
        try:
            await self._queue.abort(job.id, job.attempts)
        except QueueUnavailable:
            log.warning("job %s cancelled; its worker will stop at the next heartbeat", job.id)
