"""Report and job repositories: SQLAlchemy Core statements on the unit of work's connection."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import ConcurrentUpdate
from domain.jobs import JobExecutionLog, JobOwner, JobStatus
from domain.reports import ReportConfiguration
from domain.repositories import Admission, JobOwnerRepository, JobRepository, ReportRepository
from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.mapping import (
    job_to_row,
    lease_parameters,
    report_to_row,
    row_to_job,
    row_to_report,
    update_parameters,
)
from infrastructure.persistence.statements import (
    ACTIVE,
    ADD_SLOTS,
    CLAIM_JOB,
    COUNT_SLOTLESS_JOBS,
    GET_JOB,
    GET_OWNER,
    INSERT_INLINE_ARTIFACT,
    INSERT_JOB,
    IS_UNLIMITED,
    RELEASE_SLOT,
    RENEW_LEASE,
    REPORT_IS_CURRENT,
    UPDATE_JOB,
    set_limit,
    take_slot,
)
from infrastructure.persistence.tables import UtcDateTime, jobs, reports

# Statements are built once; SQLAlchemy caches their compiled form, so each call only binds values.
# Bind names never equal a column name: in an UPDATE those are reserved for the SET clause.
_LIVE_REPORT = sa.and_(reports.c.id == sa.bindparam("where_id"), reports.c.deleted_at.is_(None))
_GET_REPORT = sa.select(reports).where(_LIVE_REPORT)
_LIST_REPORTS = sa.select(reports).where(reports.c.deleted_at.is_(None)).order_by(reports.c.name, reports.c.id)
_INSERT_REPORT = sa.insert(reports)
_UPDATE_REPORT = sa.update(reports).where(_LIVE_REPORT)  # SET columns come from the parameters given

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
    .where(jobs.c.status.in_(ACTIVE))
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
    "chart",
    "csv_formula_escape",
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
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        self._take_slot = take_slot(insert, when=sa.true())

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        with storage_errors():
            row = (await self._conn.execute(GET_JOB, {"where_id": job_id})).mappings().first()
        return None if row is None else row_to_job(row)

    async def add(
        self, job: JobExecutionLog, *, default_limit: int = 0, as_read: ReportConfiguration | None = None
    ) -> Admission:
        params = {
            "slot_owner": job.owner_id,
            "default_limit": default_limit,
            "where_report_id": job.report_id,
            "where_report_updated_at": as_read and as_read.updated_at,
        }
        with storage_errors():
            if as_read is not None and (await self._conn.execute(REPORT_IS_CURRENT, params)).first() is None:
                return Admission.REPORT_CHANGED
            holds_slot = not job.is_terminal and not (await self._conn.execute(IS_UNLIMITED, params)).scalar_one()
            if holds_slot and (await self._conn.execute(self._take_slot, params)).first() is None:
                return Admission.TOO_MANY_ACTIVE
            await self._conn.execute(INSERT_JOB, job_to_row(job) | {"holds_slot": holds_slot})
        job.saved()
        return Admission.QUEUED

    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        params = {"where_id": job_id, "set_started_at": now, "set_lease_expires_at": lease_until}
        with storage_errors():
            row = (await self._conn.execute(CLAIM_JOB, params)).mappings().first()
        return None if row is None else row_to_job(row)

    async def update(self, job: JobExecutionLog) -> None:
        with storage_errors():
            saved = (await self._conn.execute(UPDATE_JOB, update_parameters(job))).first()
            if saved is None:
                raise ConcurrentUpdate(job.id)
            if job.ends_activity and saved.holds_slot:
                await self._conn.execute(RELEASE_SLOT, {"where_owner": job.owner_id})
            if job.artifact is not None and job.artifact.content is not None:
                await self._conn.execute(
                    INSERT_INLINE_ARTIFACT,
                    {
                        "set_artifact_key": job.artifact.key,
                        "artifact_content": job.artifact.content,
                        "set_finished_at": job.finished_at,
                    },
                )
        job.version += 1
        job.saved()

    async def list_unfinished(self, limit: int) -> builtins.list[JobExecutionLog]:
        with storage_errors():
            rows = (await self._conn.execute(_LIST_UNFINISHED, {"max_rows": limit})).mappings().all()
        return [row_to_job(row) for row in rows]

    async def list_expired(self, now: datetime, limit: int) -> builtins.list[JobExecutionLog]:
        with storage_errors():
            rows = (await self._conn.execute(_LIST_EXPIRED, {"cutoff": now, "max_rows": limit})).mappings().all()
        return [row_to_job(row) for row in rows]

    async def heartbeat(self, job: JobExecutionLog) -> bool:
        with storage_errors():
            result = await self._conn.execute(RENEW_LEASE, lease_parameters(job))
        return result.first() is not None


class SqlAlchemyJobOwnerRepository(JobOwnerRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        self._set_limit = set_limit(insert)

    async def get(self, owner_id: str) -> JobOwner:
        with storage_errors():
            row = (await self._conn.execute(GET_OWNER, {"where_owner": owner_id})).one()
        return JobOwner(owner_id, row.active_jobs, row.max_active_jobs)

    async def set_limit(self, owner_id: str, max_active_jobs: int | None) -> JobOwner:
        """Also counts the user's active jobs that hold no slot yet (admitted while they had no limit), so that a
        limit set now applies to what is already in flight."""
        owner = {"where_owner": owner_id}
        with storage_errors():
            await self._conn.execute(self._set_limit, owner | {"new_limit": max_active_jobs})
            counted = (await self._conn.execute(COUNT_SLOTLESS_JOBS, owner)).rowcount
            await self._conn.execute(ADD_SLOTS, owner | {"slots": counted})
        return await self.get(owner_id)
