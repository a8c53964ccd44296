"""Job admission on PostgreSQL: report configurations cached in the process, a job recorded in one round trip."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import JobAdmission
from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog
from domain.reports import ReportConfiguration
from domain.repositories import Admission
from infrastructure.persistence.driver import DriverStatement
from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.mapping import job_to_row
from infrastructure.persistence.repositories import SqlAlchemyReportRepository
from infrastructure.persistence.statements import ADMIT_JOB_POSTGRES

CACHED_REPORTS = 1024


class PostgresJobAdmission(JobAdmission):
    """`report` answers from a per-process LRU cache of report configurations; `admit` is one autocommit statement
    (statements.ADMIT_JOB_POSTGRES: the unit of work's report check, slot and insert composed into one round trip).
    Requests with an Idempotency-Key go to `transactional` (the unit-of-work admission), since the key needs its
    own statements in the same transaction.

    A stale cache entry costs one extra round trip: `admit` answers REPORT_CHANGED and the caller reads the
    report afresh, which replaces the entry. Edits and deletes thus take effect at once in every process.
    """

    def __init__(self, engine: AsyncEngine, transactional: JobAdmission, capacity: int = CACHED_REPORTS) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._transactional = transactional
        self._capacity = capacity
        self._cache: OrderedDict[UUID, ReportConfiguration] = OrderedDict()
        self._admit = DriverStatement.compile(ADMIT_JOB_POSTGRES, engine.dialect)

    async def report(self, report_id: UUID, *, fresh: bool = False) -> ReportConfiguration | None:
        cached = None if fresh else self._cache.get(report_id)
        if cached is not None:
            self._cache.move_to_end(report_id)
            return cached
        with storage_errors():
            async with self._engine.connect() as conn:
                report = await SqlAlchemyReportRepository(conn).get(report_id)
        if report is None:
            self._cache.pop(report_id, None)
            return None
        self._cache[report_id] = report
        self._cache.move_to_end(report_id)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return report

    async def admit(
        self,
        job: JobExecutionLog,
        *,
        report: ReportConfiguration,
        default_limit: int,
        idempotency: IdempotencyRecord | None = None,
    ) -> Admission:
        if idempotency is not None:
            return await self._transactional.admit(
                job, report=report, default_limit=default_limit, idempotency=idempotency
            )
        params = job_to_row(job) | {
            "where_report_id": report.id,
            "where_report_updated_at": report.updated_at,
            "slot_owner": job.owner_id,
            "default_limit": default_limit,
        }
        outcome = await self._admit.fetchrow(self._engine, params)
        if outcome["admitted"]:
            return Admission.QUEUED
        return Admission.TOO_MANY_ACTIVE if outcome["report_current"] else Admission.REPORT_CHANGED
