"""The job ledger on PostgreSQL: each of a worker's writes is one autocommitted statement of statements.py, run on
the driver connection (see driver.py), so a small job costs two round trips to the jobs table (claim, outcome; the
outcome's statement also stores a small artifact, `ArtifactRef.content`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import JobLedger
from domain.errors import ConcurrentUpdate
from domain.jobs import JobExecutionLog
from infrastructure.persistence.driver import DriverStatement, run_on_driver
from infrastructure.persistence.mapping import lease_parameters, row_to_job, update_parameters
from infrastructure.persistence.statements import (
    CLAIM_JOB,
    GET_JOB,
    RENEW_LEASE,
    SAVE_JOB_RELEASING_SLOT_POSTGRES,
    SAVE_JOB_WITH_ARTIFACT_POSTGRES,
    UPDATE_JOB,
)


class PostgresJobLedger(JobLedger):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        dialect = engine.dialect
        self._claim = DriverStatement.compile(CLAIM_JOB, dialect)
        self._get = DriverStatement.compile(GET_JOB, dialect)
        self._save = DriverStatement.compile(UPDATE_JOB, dialect)
        self._save_releasing_slot = DriverStatement.compile(SAVE_JOB_RELEASING_SLOT_POSTGRES, dialect)
        self._save_with_artifact = DriverStatement.compile(SAVE_JOB_WITH_ARTIFACT_POSTGRES, dialect)
        self._renew = DriverStatement.compile(RENEW_LEASE, dialect)

    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        params = {"where_id": job_id, "set_started_at": now, "set_lease_expires_at": lease_until}
        record = await self._claim.fetchrow(self._engine, params)
        return None if record is None else row_to_job(record)

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        record = await self._get.fetchrow(self._engine, {"where_id": job_id})
        return None if record is None else row_to_job(record)

    async def save(self, job: JobExecutionLog) -> None:
        params = update_parameters(job)
        content = job.artifact.content if job.artifact is not None else None
        if content is not None:  # Succeeded, with the artifact kept in this database: stored by the same statement
            params |= {"where_owner": job.owner_id, "artifact_content": content}
            saved = await self._save_with_artifact.fetchval(self._engine, params)
        elif job.ends_activity:
            saved = await self._save_releasing_slot.fetchval(self._engine, params | {"where_owner": job.owner_id})
        else:
            saved = await self._save.fetchrow(self._engine, params) is not None
        if not saved:
            raise ConcurrentUpdate(job.id)
        job.version += 1
        job.saved()

    async def renew_leases(self, jobs: Sequence[JobExecutionLog]) -> set[UUID]:
        """One statement per job, all on one connection checked out once."""
        if not jobs:
            return set()
        sql, arguments = self._renew.sql, [self._renew.arguments(lease_parameters(job)) for job in jobs]

        async def renew_all(conn: Any) -> set[UUID]:
            return {record["id"] for args in arguments if (record := await conn.fetchrow(sql, *args)) is not None}

        return await run_on_driver(self._engine, renew_all)
