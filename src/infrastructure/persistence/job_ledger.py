"""The job ledger on PostgreSQL: each of a worker's writes is one autocommitted statement on the driver connection
(see driver.py), so a small job costs two round trips to the jobs table (claim, outcome) instead of seven."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import JobLedger
from domain.errors import ConcurrentUpdate
from domain.jobs import JobExecutionLog, JobStatus
from infrastructure.persistence.driver import run_on_driver
from infrastructure.persistence.mapping import job_state, row_to_job
from infrastructure.persistence.repositories import GET_JOB_POSTGRES

# What JobExecutionLog.start does, for a row that is still Queued; RETURNING gives the job as saved.
_CLAIM = f"""UPDATE jobs SET status = '{JobStatus.RUNNING.value}', attempts = attempts + 1, started_at = $2,
    error_code = NULL, error_message = NULL, lease_expires_at = $3, version = version + 1
WHERE id = $1 AND status = '{JobStatus.QUEUED.value}'
RETURNING *"""  # noqa: S608 - constants only
# The heartbeat's rule (repositories.py) for many jobs at once: only a Running job in the same attempt is renewed,
# and its progress never falls.
_RENEW = f"""UPDATE jobs SET lease_expires_at = beat.lease, progress = GREATEST(jobs.progress, beat.progress)
FROM unnest($1::uuid[], $2::int[], $3::int[], $4::timestamptz[]) AS beat(id, attempts, progress, lease)
WHERE jobs.id = beat.id AND jobs.attempts = beat.attempts AND jobs.status = '{JobStatus.RUNNING.value}'
RETURNING jobs.id"""  # noqa: S608 - constants only


@cache
def _save_statement(columns: tuple[str, ...]) -> str:
    """The version-guarded UPDATE of the columns that `job_state` maps (values $3 on; $1 id, $2 version)."""
    assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(columns, start=3))
    return f"UPDATE jobs SET {assignments}, version = version + 1 WHERE id = $1 AND version = $2"  # noqa: S608


class PostgresJobLedger(JobLedger):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        record = await run_on_driver(self._engine, lambda conn: conn.fetchrow(_CLAIM, job_id, now, lease_until))
        return None if record is None else row_to_job(record)

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        record = await run_on_driver(self._engine, lambda conn: conn.fetchrow(GET_JOB_POSTGRES, job_id))
        return None if record is None else row_to_job(record)

    async def save(self, job: JobExecutionLog) -> None:
        state = job_state(job)
        statement = _save_statement(tuple(state))
        status = await run_on_driver(
            self._engine, lambda conn: conn.execute(statement, job.id, job.version, *state.values())
        )
        if status != "UPDATE 1":
            raise ConcurrentUpdate(job.id)
        job.version += 1

    async def renew_leases(self, jobs: Sequence[JobExecutionLog]) -> set[UUID]:
        if not jobs:
            return set()
        columns = ([j.id for j in jobs], [j.attempts for j in jobs], [j.progress for j in jobs])
        leases = [j.lease_expires_at for j in jobs]
        records = await run_on_driver(self._engine, lambda conn: conn.fetch(_RENEW, *columns, leases))
        return {record["id"] for record in records}
