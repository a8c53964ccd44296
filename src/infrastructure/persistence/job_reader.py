"""Job reads for the polling paths: one SELECT in autocommit mode, no BEGIN/ROLLBACK round trips; on PostgreSQL
through the driver connection (see driver.py)."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import JobReader
from domain.jobs import JobExecutionLog
from infrastructure.persistence.driver import run_on_driver
from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.mapping import row_to_job
from infrastructure.persistence.repositories import GET_JOB, GET_JOB_POSTGRES


class SqlAlchemyJobReader(JobReader):
    def __init__(self, engine: AsyncEngine) -> None:
        # Shares the engine's pool; only the isolation level of the checked-out connections differs.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._postgres = engine.dialect.name == "postgresql"

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        if self._postgres:
            record = await run_on_driver(self._engine, lambda conn: conn.fetchrow(GET_JOB_POSTGRES, job_id))
            return None if record is None else row_to_job(record)
        with storage_errors():
            async with self._engine.connect() as conn:
                row = (await conn.execute(GET_JOB, {"where_id": job_id})).mappings().first()
        return None if row is None else row_to_job(row)
