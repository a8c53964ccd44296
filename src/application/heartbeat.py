"""Keep running jobs' leases alive (and their progress saved) while their artifacts are produced."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from application.errors import StorageUnavailable
from application.ports import Clock, JobLedger
from domain.jobs import JobExecutionLog

log = logging.getLogger(__name__)
T = TypeVar("T")


class LeaseLost(Exception):
    """The job is no longer this attempt's: it was cancelled, or its lease expired and another worker took it."""


class Heartbeat:
    """Runs each job's `work` while renewing its lease every `interval` seconds (saving its progress too).

    One loop per process renews the leases of all the jobs it runs, with one write for all of them, so that a
    job costs no task and no write of its own, and a busy worker no more writes than an idle one. The loop runs
    while there are jobs and stops when the last one ends. When a renewal finds that a job is no longer Running
    in this attempt, its `work` is cancelled and LeaseLost raised, so a cancelled or taken-over job stops within
    one interval. A renewal that fails because the database is unavailable is skipped: if the lease then runs
    out, another worker may take the job over, and this attempt's result will be refused when it is recorded.
    """

    def __init__(self, ledger: JobLedger, clock: Clock, *, lease_seconds: float, interval_seconds: float) -> None:
        self._ledger = ledger
        self._clock = clock
        self._lease = timedelta(seconds=lease_seconds)
        self._interval = interval_seconds
        self._running: dict[int, _Running] = {}  # by the identity of the job entity: one per attempt run here
        self._loop: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()

    async def run(self, job: JobExecutionLog, work: Awaitable[T]) -> T:
        """Await `work` in the calling task, with `job`'s lease renewed meanwhile."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Heartbeat.run must be awaited in a task")
        running = self._running[id(job)] = _Running(job, task)
        self._idle.clear()
        if self._loop is None or self._loop.get_loop() is not task.get_loop():
            self._idle = asyncio.Event()
            # A context of its own: the loop serves every job, its log lines must not carry this one's job_id.
            renewals = self._renew_while_running()
            self._loop = asyncio.create_task(renewals, name="lease-heartbeat", context=contextvars.Context())
        try:
            result = await work
        except BaseException as exc:
            # After a lost lease, whatever `work` made of our cancel (it may turn it into an error of its own) is
            # LeaseLost, unless someone else cancelled the task too (a stopping worker): that wins.
            if not running.lost or (task.uncancel() > 0 and isinstance(exc, asyncio.CancelledError)):
                raise
            raise LeaseLost from exc
        finally:
            del self._running[id(job)]
            if not self._running:
                self._idle.set()
        if running.lost:  # `work` swallowed our cancel: the attempt is lost all the same
            task.uncancel()
            raise LeaseLost
        return result

    async def _renew_while_running(self) -> None:
        try:
            while self._running:
                try:
                    async with asyncio.timeout(self._interval):
                        await self._idle.wait()  # set when the last job ends: stop without waiting out the interval
                except TimeoutError:
                    await self._renew()
        finally:
            self._loop = None

    async def _renew(self) -> None:
        beating = [running for running in self._running.values() if not running.lost]
        until = self._clock() + self._lease
        for running in beating:
            running.job.renew_lease(until)
        try:
            held = await self._ledger.renew_leases([running.job for running in beating])
        except StorageUnavailable:
            log.warning("leases of %d running jobs not renewed: the database is unavailable", len(beating))
            return
        except Exception:  # the loop serves every running job: it must outlive a bug in one renewal
            log.exception("leases of %d running jobs not renewed", len(beating))
            return
        for running in beating:
            # A job that ended during the write is gone from _running; its task must not be cancelled.
            if running.job.id not in held and self._running.get(id(running.job)) is running:
                running.lost = True
                running.task.cancel()


@dataclass(slots=True)
class _Running:
    job: JobExecutionLog
    task: asyncio.Task[Any]
    lost: bool = False
