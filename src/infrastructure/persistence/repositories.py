"""Report and job repositories: SQLAlchemy Core statements on the unit of work's connection."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import ConcurrentUpdate
from domain.jobs import JobExecutionLog, JobStatus
from domain.reports import ReportConfiguration
from domain.repositories import JobRepository, ReportRepository
from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.mapping import job_state, job_to_row, report_to_row, row_to_job, row_to_report
from infrastructure.persistence.tables import jobs, reports

# Statements are built once; SQLAlchemy caches their compiled form, so each call only binds values.
# Bind names never equal a column name: in an UPDATE those are reserved for the SET clause.
_LIVE_REPORT = sa.and_(reports.c.id == sa.bindparam("where_id"), reports.c.deleted_at.is_(None))
_GET_REPORT = sa.select(reports).where(_LIVE_REPORT)
_LIST_REPORTS = sa.select(reports).where(reports.c.deleted_at.is_(None)).order_by(reports.c.name, reports.c.id)
_INSERT_REPORT = sa.insert(reports)
_UPDATE_REPORT = sa.update(reports).where(_LIVE_REPORT)  # SET columns come from the parameters given

GET_JOB = sa.select(jobs).where(jobs.c.id == sa.bindparam("where_id"))
_INSERT_JOB = sa.insert(jobs)
_UPDATE_JOB = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("where_id"), jobs.c.version == sa.bindparam("where_version"))
    .values(version=jobs.c.version + 1)
)
_SAVE_PROGRESS = (
    sa.update(jobs)
    .where(
        jobs.c.id == sa.bindparam("where_id"),
        jobs.c.status == JobStatus.RUNNING.value,
        jobs.c.progress < sa.bindparam("new_progress"),
    )
    .values(progress=sa.bindparam("new_progress"))
)
_LIST_UNFINISHED = (
    sa.select(jobs)
    .where(jobs.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(sa.bindparam("max_rows"))
)
_DEFINITION_COLUMNS = (
    "name",
    "description",
    "query",
    "parameters",
    "formats",
    "delivery_target",
    "async_enabled",
    "updated_at",
)


class SqlAlchemyReportRepository(ReportRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def get(self, report_id: UUID) -> ReportConfiguration | None:
        with storage_errors():
            row = (await self._conn.execute(_GET_REPORT, {"where_id": report_id})).mappings().first()
        return None if row is None else row_to_report(row)

    async def list(self) -> builtins.list[ReportConfiguration]:
        with storage_errors():
            rows = (await self._conn.execute(_LIST_REPORTS)).mappings().all()
        return [row_to_report(row) for row in rows]

    async def add(self, report: ReportConfiguration) -> None:
        now = datetime.now(UTC)
        report.created_at = report.created_at or now
        report.updated_at = report.updated_at or report.created_at
        with storage_errors():
            await self._conn.execute(_INSERT_REPORT, report_to_row(report))

    async def update(self, report: ReportConfiguration) -> bool:
        report.updated_at = report.updated_at or datetime.now(UTC)
        row = report_to_row(report)
        values = {column: row[column] for column in _DEFINITION_COLUMNS}
        with storage_errors():
            result = await self._conn.execute(_UPDATE_REPORT, {"where_id": report.id, **values})
        return result.rowcount == 1

    async def delete(self, report_id: UUID) -> bool:
        with storage_errors():
            result = await self._conn.execute(_UPDATE_REPORT, {"where_id": report_id, "deleted_at": datetime.now(UTC)})
        return result.rowcount == 1


class SqlAlchemyJobRepository(JobRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        with storage_errors():
            row = (await self._conn.execute(GET_JOB, {"where_id": job_id})).mappings().first()
        return None if row is None else row_to_job(row)

    async def add(self, job: JobExecutionLog) -> None:
        with storage_errors():
            await self._conn.execute(_INSERT_JOB, job_to_row(job))

    async def update(self, job: JobExecutionLog) -> None:
        params = {"where_id": job.id, "where_version": job.version, **job_state(job)}
        with storage_errors():
            result = await self._conn.execute(_UPDATE_JOB, params)
        if result.rowcount != 1:
            raise ConcurrentUpdate(job.id)
        job.version += 1

    async def list_unfinished(self, limit: int) -> builtins.list[JobExecutionLog]:
        with storage_errors():
            rows = (await self._conn.execute(_LIST_UNFINISHED, {"max_rows": limit})).mappings().all()
        return [row_to_job(row) for row in rows]

    async def save_progress(self, job: JobExecutionLog) -> None:
        with storage_errors():
            await self._conn.execute(_SAVE_PROGRESS, {"where_id": job.id, "new_progress": job.progress})
