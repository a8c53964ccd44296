"""Job admission over the unit of work: the portable implementation (SQLite, the fakes), no cache."""

from __future__ import annotations

from uuid import UUID

from application.ports import Admission, JobAdmission, UnitOfWorkFactory
from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog
from domain.reports import ReportConfiguration


class UnitOfWorkAdmission(JobAdmission):
    """Reads the report on every call; admits in one transaction: report check, per-user count, inserts, commit.

    The repositories' `count_active` serializes one user's admissions (see JobRepository), so the limit is exact.
    """

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
        max_active: int | None,
        idempotency: IdempotencyRecord | None = None,
    ) -> Admission:
        async with self._uow() as uow:
            current = await uow.reports.get(report.id)
            if current is None or current.updated_at != report.updated_at:
                return Admission.REPORT_CHANGED
            if max_active is not None and await uow.jobs.count_active(job.owner_id) >= max_active:
                return Admission.TOO_MANY_ACTIVE
            await uow.jobs.add(job)
            if idempotency is not None:
                await uow.idempotency.add(idempotency)
            await uow.commit()
        return Admission.QUEUED
