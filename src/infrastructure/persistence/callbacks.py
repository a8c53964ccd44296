"""The webhook outbox on the job rows: claim the deliveries due, record how each went (statements.py has the rules).

Each call is one autocommitted statement (no BEGIN/COMMIT round trips), so that the once-a-second look for due
deliveries costs one indexed query when nothing is due."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import CallbackOutbox
from domain.errors import ConcurrentUpdate
from domain.jobs import JobExecutionLog
from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.mapping import row_to_job, update_parameters
from infrastructure.persistence.statements import CLAIM_DUE_CALLBACKS, UPDATE_JOB


class SqlAlchemyCallbackOutbox(CallbackOutbox):
    def __init__(self, engine: AsyncEngine) -> None:
        # Shares the engine's pool; only the isolation level of the checked-out connections differs.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def claim_due(self, now: datetime, held_until: datetime, limit: int) -> list[JobExecutionLog]:
        params = {"due_at": now, "held_until": held_until, "max_rows": limit}
        with storage_errors():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(CLAIM_DUE_CALLBACKS, params)).mappings().all()
        return [row_to_job(row) for row in rows]

    async def record(self, job: JobExecutionLog) -> None:
        with storage_errors():
            async with self._engine.connect() as conn:
                saved = (await conn.execute(UPDATE_JOB, update_parameters(job))).first()
        if saved is None:
            raise ConcurrentUpdate(job.id)
        job.version += 1
