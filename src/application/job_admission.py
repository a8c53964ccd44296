"""Job admission over the unit of work: the portable implementation (SQLite, and requests with an
Idempotency-Key on PostgreSQL), no cache."""

from __future__ import annotations

from uuid import UUID

from application.ports import JobAdmission, UnitOfWorkFactory
from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog
from domain.reports import ReportConfiguration
from domain.repositories import Admission


class UnitOfWorkAdmission(JobAdmission):
    """Reads the report on every call; admits in one transaction: the job (with the report check and the owner's
    limit, see JobRepository.add), its idempotency key, commit."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def report(self, report_id: UUID, *, fresh: bool = False) -> ReportConfiguration | None:
        async with self._uow() as uow:
            return await uow.reports.get(report_id)

    async def admit(
        self,
        job: JobExecutionLog,
        *,
        report: ReportConfiguration,
        default_limit: int,
        idempotency: IdempotencyRecord | None = None,
    ) -> Admission:
        async with self._uow() as uow:
            admission = await uow.jobs.add(job, default_limit=default_limit, as_read=report)
            if admission is not Admission.QUEUED:
                return admission
            if idempotency is not None:
                await uow.idempotency.add(idempotency)
            await uow.commit()
        return Admission.QUEUED
