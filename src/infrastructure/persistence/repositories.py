"""Report and job repositories: SQLAlchemy Core statements on the unit of work's connection."""

from __future__ import annotations

import builtins
import hashlib
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
from infrastructure.persistence.tables import UtcDateTime, jobs, reports

# Statements are built once; SQLAlchemy caches their compiled form, so each call only binds values.
# Bind names never equal a column name: in an UPDATE those are reserved for the SET clause.
_LIVE_REPORT = sa.and_(reports.c.id == sa.bindparam("where_id"), reports.c.deleted_at.is_(None))
_GET_REPORT = sa.select(reports).where(_LIVE_REPORT)
_LIST_REPORTS = sa.select(reports).where(reports.c.deleted_at.is_(None)).order_by(reports.c.name, reports.c.id)
_INSERT_REPORT = sa.insert(reports)
_UPDATE_REPORT = sa.update(reports).where(_LIVE_REPORT)  # SET columns come from the parameters given

GET_JOB = sa.select(jobs).where(jobs.c.id == sa.bindparam("where_id"))
GET_JOB_POSTGRES = "SELECT * FROM jobs WHERE id = $1"  # the same read, on the driver connection (driver.py)
_INSERT_JOB = sa.insert(jobs)
_UPDATE_JOB = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("where_id"), jobs.c.version == sa.bindparam("where_version"))
    .values(version=jobs.c.version + 1)
)
_NEW_PROGRESS = sa.bindparam("new_progress", type_=sa.Integer)
_HEARTBEAT = (
    sa.update(jobs)
    .where(
        jobs.c.id == sa.bindparam("where_id"),
        jobs.c.status == JobStatus.RUNNING.value,
        jobs.c.attempts == sa.bindparam("where_attempts"),
    )
    .values(
        lease_expires_at=sa.bindparam("new_lease", type_=UtcDateTime),
        # Not a filter: a heartbeat whose progress did not rise must still renew the lease and report True.
        progress=sa.case((jobs.c.progress < _NEW_PROGRESS, _NEW_PROGRESS), else_=jobs.c.progress),
    )
)
_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_COUNT_ACTIVE = (
    sa.select(sa.func.count())
    .select_from(jobs)
    .where(jobs.c.owner_id == sa.bindparam("where_owner"), jobs.c.status.in_(_ACTIVE))
)
_LOCK_OWNER_POSTGRES = sa.select(sa.func.pg_advisory_xact_lock(sa.bindparam("lock_key", type_=sa.BigInteger)))
# SQLite has one write lock per database: a write that changes nothing still takes it, until the transaction ends.
_LOCK_DATABASE_SQLITE = sa.update(jobs).where(sa.false()).values(owner_id=jobs.c.owner_id)
_LIST_EXPIRED = (
    sa.select(jobs)
    .where(
        jobs.c.status == JobStatus.SUCCEEDED.value,
        jobs.c.expires_at <= sa.bindparam("cutoff", type_=UtcDateTime),
        jobs.c.artifact_key.is_not(None),
    )
    .order_by(jobs.c.expires_at, jobs.c.id)
    .limit(sa.bindparam("max_rows"))
)
_LIST_UNFINISHED = (
    sa.select(jobs)
    .where(jobs.c.status.in_(_ACTIVE))
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

    async def list_expired(self, now: datetime, limit: int) -> builtins.list[JobExecutionLog]:
        with storage_errors():
            rows = (await self._conn.execute(_LIST_EXPIRED, {"cutoff": now, "max_rows": limit})).mappings().all()
        return [row_to_job(row) for row in rows]

    async def count_active(self, owner_id: str) -> int:
        with storage_errors():
            await self._lock_owner(owner_id)
            # A statement of its own, after the lock: under READ COMMITTED it sees what the previous holder committed.
            count = await self._conn.scalar(_COUNT_ACTIVE, {"where_owner": owner_id})
        return int(count or 0)

    async def heartbeat(self, job: JobExecutionLog) -> bool:
        params = {
            "where_id": job.id,
            "where_attempts": job.attempts,
            "new_lease": job.lease_expires_at,
            "new_progress": job.progress,
        }
        with storage_errors():
            result = await self._conn.execute(_HEARTBEAT, params)
        return result.rowcount == 1

    async def _lock_owner(self, owner_id: str) -> None:
        """Held until the transaction ends, so that one user's count-then-insert transactions take turns."""
        if self._conn.dialect.name == "postgresql":
            await self._conn.execute(_LOCK_OWNER_POSTGRES, {"lock_key": owner_lock_key(owner_id)})
        else:
            await self._conn.execute(_LOCK_DATABASE_SQLITE)


def owner_lock_key(owner_id: str) -> int:
    """A stable 64-bit advisory lock key per user (Python's hash() differs between processes)."""
    digest = hashlib.blake2b(owner_id.encode(), digest_size=8, person=b"reportgen-owner").digest()
    return int.from_bytes(digest, "big", signed=True)
