"""Job reads for the polling paths: statements.GET_JOB in autocommit mode, no BEGIN/ROLLBACK round trips; on
PostgreSQL on the driver connection (see driver.py)."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import JobPosition, JobReader, JobSelection
from domain.jobs import JobExecutionLog
from infrastructure.persistence.driver import DriverStatement
from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.mapping import row_to_job
from infrastructure.persistence.statements import GET_JOB, list_jobs


class SqlAlchemyJobReader(JobReader):
    """Through SQLAlchemy (SQLite; any dialect)."""

    def __init__(self, engine: AsyncEngine) -> None:
        # Shares the engine's pool; only the isolation level of the checked-out connections differs.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        with storage_errors():
            async with self._engine.connect() as conn:
                row = (await conn.execute(GET_JOB, {"where_id": job_id})).mappings().first()
        return None if row is None else row_to_job(row)

    async def list(
        self, selection: JobSelection, limit: int, after: JobPosition | None = None
    ) -> list[JobExecutionLog]:
        with storage_errors():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(list_jobs(selection, limit, after))).mappings().all()
        return [row_to_job(row) for row in rows]


class PostgresJobReader(JobReader):
    """The same statement, compiled once, on the driver connection; lists (built per filter) through SQLAlchemy."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._get = DriverStatement.compile(GET_JOB, engine.dialect)
        self._lists = SqlAlchemyJobReader(engine)

    async def list(
        self, selection: JobSelection, limit: int, after: JobPosition | None = None
    ) -> list[JobExecutionLog]:
        return await self._lists.list(selection, limit, after)

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        record = await self._get.fetchrow(self._engine, {"where_id": job_id})
        return None if record is None else row_to_job(record)
