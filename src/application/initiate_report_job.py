"""Accept a report request, record it as a Queued job, and hand it to the queue."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from application.errors import QueueUnavailable, StorageUnavailable
from application.ports import Clock, IdFactory, JobAdmission, JobQueue, UnitOfWorkFactory
from domain.callbacks import Callback, CallbackPolicy
from domain.errors import (
    ConcurrentUpdate,
    DuplicateIdempotencyKey,
    FieldError,
    IdempotencyKeyReused,
    InvalidJobTransition,
    InvalidParameters,
    ReportNotFound,
    TooManyActiveJobs,
)
from domain.idempotency import IdempotencyRecord, fingerprint
from domain.jobs import ErrorCode, JobExecutionLog
from domain.repositories import Admission

log = logging.getLogger(__name__)

REPORT_READS = 3
"""How often a request reads its report before it gives up on a report that keeps changing under it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiateReportJob:
    report_id: UUID
    user_id: str
    parameters: Mapping[str, object] = field(default_factory=dict)
    format: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None
    """Where to POST the job's end (a webhook); checked against the service's CallbackPolicy."""
    status_url_base: str = ""
    """The jobs' status URL up to the job id, as the requester reached the API (`https://host/api/v1/jobs/`): the
    links of the job a webhook announces start with it."""


@dataclass(frozen=True, slots=True)
class JobInitiated:
    job_id: UUID
    replayed: bool = False
    """True when an earlier request with the same Idempotency-Key created the job."""


class InitiateAsynchronousReportJob:
    """Start a report in the background and return its job id at once.

    The job is on record before the answer goes out, and is then handed to a worker. If no worker can be
    reached, the request fails with 503 and the job is closed as Failed (code QUEUE_UNAVAILABLE), so a
    retry starts afresh. With an Idempotency-Key, the same user repeating the same request gets the first
    job back, also when the two requests race; the same key with a different request is refused (422).
    A user may have only a limited number of jobs Queued or Running at once (429 over it): `default_limit`, or
    the limit an admin set for that user; 0 means no limit. With a `callbackUrl`, the job POSTs a signed webhook
    there when it ends (Succeeded, Failed or Cancelled).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        admission: JobAdmission,
        queue: JobQueue,
        clock: Clock,
        *,
        default_limit: int = 0,
        installed_formats: Collection[str] | None = None,
        callback_policy: CallbackPolicy | None = None,
        new_id: IdFactory = uuid4,
    ) -> None:
        self._uow = uow
        self._admission = admission
        self._queue = queue
        self._clock = clock
        self._new_id = new_id
        self._default_limit = default_limit
        self._installed_formats = installed_formats
        self._callbacks = callback_policy or CallbackPolicy(enabled=False)

    async def execute(self, command: InitiateReportJob) -> JobInitiated:
        replay = await self._replay(command)
        if replay is not None:
            return replay
        try:
            job = await self._create(command)
        except DuplicateIdempotencyKey:
            # A concurrent request with the same key committed first: answer with its job.
            replay = await self._replay(command)
            if replay is None:
                raise
            return replay
        try:
            await self._queue.enqueue(job.id)
        except QueueUnavailable:
            await self._close_unqueued(job, command)
            raise
        return JobInitiated(job.id)

    async def _replay(self, command: InitiateReportJob) -> JobInitiated | None:
        if command.idempotency_key is None:
            return None
        async with self._uow() as uow:
            record = await uow.idempotency.get(command.user_id, command.idempotency_key)
        if record is None or not record.live(self._clock()):
            return None
        if record.fingerprint != _fingerprint(command):
            raise IdempotencyKeyReused(command.idempotency_key)
        return JobInitiated(record.job_id, replayed=True)

    async def _create(self, command: InitiateReportJob) -> JobExecutionLog:
        for read in range(REPORT_READS):
            report = await self._admission.report(command.report_id, fresh=read > 0)
            if report is None:
                raise ReportNotFound(command.report_id)
            report.ensure_async_api_delivery()
            request = report.resolve(command.parameters, command.format)
            self._ensure_installed(request.format)
            now = self._clock()
            job_id = self._new_id()
            job = JobExecutionLog.queue(
                job_id=job_id,
                report=report,
                request=request,
                owner_id=command.user_id,
                now=now,
                request_id=command.request_id,
                callback=self._callback(command, job_id),
            )
            record = None
            if command.idempotency_key is not None:
                record = IdempotencyRecord(command.user_id, command.idempotency_key, _fingerprint(command), job.id, now)
            admission = await self._admission.admit(
                job, report=report, default_limit=self._default_limit, idempotency=record
            )
            if admission is Admission.QUEUED:
                return job
            if admission is Admission.TOO_MANY_ACTIVE:
                raise TooManyActiveJobs
        raise ConcurrentUpdate(command.report_id)  # the report changed on every read

    def _callback(self, command: InitiateReportJob, job_id: UUID) -> Callback | None:
        if command.callback_url is None:
            return None
        url = self._callbacks.check(command.callback_url)
        return Callback(url=url, status_url=f"{command.status_url_base}{job_id}")

    def _ensure_installed(self, name: str) -> None:
        """A format's library may be an optional install (parquet): a job this service cannot run is not taken."""
        if self._installed_formats is not None and name not in self._installed_formats:
            message = f"the {name} format is not installed on this server; ask its operator, or use another format"
            raise InvalidParameters([FieldError("format", message)])

    async def _close_unqueued(self, job: JobExecutionLog, command: InitiateReportJob) -> None:
        """Close a job that no worker will hear of; free its idempotency key so that a retry starts afresh."""
        try:
            async with self._uow() as uow:
                job.fail(
                    self._clock(),
                    ErrorCode.QUEUE_UNAVAILABLE,
                    "The job could not be handed to a worker. Request the report again.",
                )
                await uow.jobs.update(job)
                if command.idempotency_key is not None:
                    await uow.idempotency.delete(command.user_id, command.idempotency_key)
                await uow.commit()
        except (ConcurrentUpdate, InvalidJobTransition):
            log.info("job %s was picked up despite the queue error; leaving it as it is", job.id)
        except StorageUnavailable:
            log.warning("job %s could not be marked as never queued; the database is unavailable", job.id)


def _fingerprint(command: InitiateReportJob) -> str:
    return fingerprint(command.report_id, command.parameters, command.format, command.callback_url)
