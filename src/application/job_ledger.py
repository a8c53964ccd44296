"""The job ledger over the unit of work: the portable implementation (SQLite, the fakes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from application.ports import JobLedger, UnitOfWorkFactory
from domain.jobs import JobExecutionLog


class UnitOfWorkJobLedger(JobLedger):
    """Each call is one unit of work of its own."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        async with self._uow() as uow:
            job = await uow.jobs.claim(job_id, now, lease_until)
            if job is not None:
                await uow.commit()
        return job

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        async with self._uow() as uow:
            return await uow.jobs.get(job_id)

    async def save(self, job: JobExecutionLog) -> None:
        async with self._uow() as uow:
            await uow.jobs.update(job)
            await uow.commit()

    async def renew_leases(self, jobs: Sequence[JobExecutionLog]) -> set[UUID]:
        async with self._uow() as uow:
            held = {job.id for job in jobs if await uow.jobs.heartbeat(job)}
            await uow.commit()
        return held
