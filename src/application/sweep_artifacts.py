"""The retention sweep: delete the artifacts of jobs past their expiry, and expired idempotency keys."""

from __future__ import annotations

import logging

from application.ports import ArtifactStore, Clock, UnitOfWorkFactory
from domain.errors import ConcurrentUpdate
from domain.idempotency import KEY_LIFETIME

log = logging.getLogger(__name__)
TEMPORARY_FILE_AGE_SECONDS = 3600.0


class SweepExpiredArtifacts:
    """Delete each expired artifact (the job stays Succeeded; its result answers 410 Gone), purge idempotency
    keys older than their lifetime, and remove temporary files that crashed writers left behind.

    Only artifacts of Succeeded jobs past `expires_at` are touched: never a file of a live job.
    Returns how many artifacts were deleted.
    """

    def __init__(self, uow: UnitOfWorkFactory, artifacts: ArtifactStore, clock: Clock) -> None:
        self._uow = uow
        self._artifacts = artifacts
        self._clock = clock

    async def execute(self, limit: int = 500) -> int:
        now = self._clock()
        async with self._uow() as uow:
            expired = await uow.jobs.list_expired(now, limit)
            await uow.idempotency.purge(now - KEY_LIFETIME)
            await uow.commit()
        deleted = 0
        for job in expired:
            if job.artifact is None:
                continue
            key = job.artifact.key
            job.discard_artifact()
            try:
                async with self._uow() as uow:
                    await uow.jobs.update(job)
                    await uow.commit()
            except ConcurrentUpdate:
                continue
            await self._artifacts.delete(key)
            deleted += 1
        await self._artifacts.sweep_temporary(TEMPORARY_FILE_AGE_SECONDS)
        if deleted:
            log.info("deleted %d expired artifacts", deleted)
        return deleted
