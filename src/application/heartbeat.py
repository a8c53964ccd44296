"""Keep a running job's lease alive (and its progress saved) while its artifact is produced."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from application.errors import StorageUnavailable
from application.ports import Clock, UnitOfWorkFactory
from domain.jobs import JobExecutionLog

log = logging.getLogger(__name__)
T = TypeVar("T")


class LeaseLost(Exception):
    """The job is no longer this attempt's: it was cancelled, or its lease expired and another worker took it."""


class Heartbeat:
    """Runs `work` while renewing the job's lease every `interval` seconds (saving its progress too).

    When a renewal finds that the job is no longer Running in this attempt, `work` is cancelled and
    LeaseLost raised, so a cancelled or taken-over job stops within one interval. A renewal that fails
    because the database is unavailable is skipped: if the lease then runs out, another worker may take
    the job over, and this attempt's result will be refused when it is recorded.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, *, lease_seconds: float, interval_seconds: float) -> None:
        self._uow = uow
        self._clock = clock
        self._lease = timedelta(seconds=lease_seconds)
        self._interval = interval_seconds

    async def run(self, job: JobExecutionLog, work: Awaitable[T]) -> T:
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._interval)
                if done:
                    return task.result()
                if not await self._beat(job):
                    raise LeaseLost
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _beat(self, job: JobExecutionLog) -> bool:
        job.renew_lease(self._clock() + self._lease)
        try:
            async with self._uow() as uow:
                owned = await uow.jobs.heartbeat(job)
                await uow.commit()
        except StorageUnavailable:
            log.warning("lease of job %s not renewed: the database is unavailable", job.id)
            return True
        return owned
