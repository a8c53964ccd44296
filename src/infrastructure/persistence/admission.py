"""Job admission on PostgreSQL: report configurations cached in the process, a job recorded in one round trip."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import Admission, JobAdmission
from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog
from domain.reports import ReportConfiguration
from infrastructure.persistence.driver import run_on_driver
from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.mapping import job_to_row
from infrastructure.persistence.repositories import SqlAlchemyReportRepository, owner_lock_key

CACHED_REPORTS = 1024

# Through the driver connection (see driver.py); the JSON text is the job's row, encoded by msgspec.
_ADMIT = "SELECT reportgen_admit_job($1::jsonb, $2, $3, $4)"
_OUTCOMES = {admission.value: admission for admission in Admission}


class PostgresJobAdmission(JobAdmission):
    """`report` answers from a per-process LRU cache of report configurations; `admit` is one autocommit call of
    the `reportgen_admit_job` function (migration 0003), which checks that the report is unchanged, takes the
    owner's advisory lock, counts and inserts. Requests with an Idempotency-Key go to `transactional` (the
    unit-of-work admission), since the key needs its own statements in the same transaction.

    A stale cache entry costs one extra round trip: `admit` answers REPORT_CHANGED and the caller reads the
    report afresh, which replaces the entry. Edits and deletes thus take effect at once in every process.
    """

    def __init__(self, engine: AsyncEngine, transactional: JobAdmission, capacity: int = CACHED_REPORTS) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._transactional = transactional
        self._capacity = capacity
        self._cache: OrderedDict[UUID, ReportConfiguration] = OrderedDict()

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
        max_active: int | None,
        idempotency: IdempotencyRecord | None = None,
    ) -> Admission:
        if idempotency is not None:
            return await self._transactional.admit(job, report=report, max_active=max_active, idempotency=idempotency)
        row = msgspec.json.encode(job_to_row(job)).decode()
        lock = owner_lock_key(job.owner_id)
        outcome = await run_on_driver(
            self._engine, lambda conn: conn.fetchval(_ADMIT, row, report.updated_at, max_active, lock)
        )
        return _OUTCOMES[str(outcome)]
