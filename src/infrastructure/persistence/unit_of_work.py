"""The unit of work: one connection and one transaction, committed only on request."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.ports import UnitOfWork
from domain.repositories import IdempotencyRepository, JobOwnerRepository, JobRepository, ReportRepository
from infrastructure.persistence.engine import close_quietly, storage_errors
from infrastructure.persistence.idempotency import SqlAlchemyIdempotencyRepository
from infrastructure.persistence.repositories import (
    SqlAlchemyJobOwnerRepository,
    SqlAlchemyJobRepository,
    SqlAlchemyReportRepository,
)


class SqlAlchemyUnitOfWork(UnitOfWork):
    """Create one per use-case call: entering checks a connection out of the engine's pool, leaving returns it."""

    reports: ReportRepository
    jobs: JobRepository
    owners: JobOwnerRepository
    idempotency: IdempotencyRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        with storage_errors():
            conn = await self._engine.connect()
        try:
            with storage_errors():
                _ = await conn.begin()  # asyncpg and sqlite3 send BEGIN with the first statement
        except BaseException:
            await close_quietly(conn)
            raise
        self._conn = conn
        self.reports = SqlAlchemyReportRepository(conn)
        self.jobs = SqlAlchemyJobRepository(conn)
        self.owners = SqlAlchemyJobOwnerRepository(conn)
        self.idempotency = SqlAlchemyIdempotencyRepository(conn)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_quietly(conn)  # closing rolls back whatever was not committed

    async def commit(self) -> None:
        if self._conn is None:
            raise RuntimeError("commit() outside `async with` of the unit of work")
        with storage_errors():
            await self._conn.commit()
