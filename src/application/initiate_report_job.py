"""Seed steps 3-9: accept a report request, record it as a Queued job, and hand it to the queue."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from application.errors import QueueUnavailable, StorageUnavailable
from application.ports import Clock, IdFactory, JobQueue, UnitOfWorkFactory
from domain.errors import ConcurrentUpdate, InvalidJobTransition, ReportNotFound
from domain.jobs import ErrorCode, JobExecutionLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiateReportJob:
    report_id: UUID
    user_id: str
    parameters: Mapping[str, object] = field(default_factory=dict)
    format: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class JobInitiated:
    job_id: UUID


class InitiateAsynchronousReportJob:
    """Start a report in the background and return its job id at once.

    The job row is committed before the job is enqueued, so a worker never looks for a row that is not
    there yet, and a job that was accepted is on record. If the queue refuses the job, the row is marked
    Failed with QUEUE_UNAVAILABLE (nobody would ever run it) and QueueUnavailable is raised: the client
    is told to retry, and no job is left Queued with no worker to run it.
    """

    def __init__(self, uow: UnitOfWorkFactory, queue: JobQueue, clock: Clock, new_id: IdFactory = uuid4) -> None:
        self._uow = uow
        self._queue = queue
        self._clock = clock
        self._new_id = new_id

    async def execute(self, command: InitiateReportJob) -> JobInitiated:
        async with self._uow() as uow:
            report = await uow.reports.get(command.report_id)
            if report is None:
                raise ReportNotFound(command.report_id)
            report.ensure_async_api_delivery()
            request = report.resolve(command.parameters, command.format)
            job = JobExecutionLog.queue(
                job_id=self._new_id(),
                report=report,
                request=request,
                owner_id=command.user_id,
                now=self._clock(),
                request_id=command.request_id,
            )
            await uow.jobs.add(job)
            await uow.commit()
        try:
            await self._queue.enqueue(job.id)
        except QueueUnavailable:
            await self._close_unqueued(job)
            raise
        return JobInitiated(job.id)

    async def _close_unqueued(self, job: JobExecutionLog) -> None:
        try:
            async with self._uow() as uow:
                job.fail(
                    self._clock(),
                    ErrorCode.QUEUE_UNAVAILABLE,
                    "The job could not be handed to a worker. Request the report again.",
                )
                await uow.jobs.update(job)
                await uow.commit()
        except (ConcurrentUpdate, InvalidJobTransition):
            log.info("job %s was picked up despite the queue error; leaving it as it is", job.id)
        except StorageUnavailable:
            log.warning("job %s could not be marked as never queued; the database is unavailable", job.id)
