"""The one place where committed job transitions are announced.

Every write that changes a job's status goes through a unit of work or the job ledger. Wrapped by `publishing`,
both hand the transitions their write committed to `JobEvents`, after the commit: the entity records each change
(`JobExecutionLog.events`), the wrapper takes them as the job is saved and publishes them once the commit returned.
A write that fails, or a unit of work left without commit, announces nothing.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self
from uuid import UUID

from application.ports import JobEvents, JobLedger, JobTransition, UnitOfWork, UnitOfWorkFactory
from domain.jobs import JobExecutionLog, JobStatus, JobStatusChanged
from domain.reports import ReportConfiguration
from domain.repositories import Admission, JobRepository

log = logging.getLogger(__name__)

Subscriber = Callable[[Sequence[JobTransition]], Awaitable[None]]


class Subscribers(JobEvents):
    """Hands each announcement to every subscriber in turn; one that fails is logged and the others still hear it."""

    def __init__(self, *subscribers: Subscriber) -> None:
        self._subscribers = list(subscribers)

    def add(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, transitions: Sequence[JobTransition]) -> None:
        for subscriber in self._subscribers:
            try:
                await subscriber(transitions)
            except Exception:
                log.exception("a subscriber of job transitions failed", extra={"subscriber": repr(subscriber)})


def publishing(units: UnitOfWorkFactory, events: JobEvents) -> UnitOfWorkFactory:
    """Units of work that announce the job transitions they commit."""
    return lambda: PublishingUnitOfWork(units(), events)


def _saving(job: JobExecutionLog) -> list[JobTransition]:
    """The transitions a save of `job` is about to store, each with the job as it will be saved."""
    if not job.events:
        return []
    snapshot = copy.copy(job)
    snapshot.events = []
    return [JobTransition(change, snapshot) for change in job.events]


def _claimed(job: JobExecutionLog) -> list[JobTransition]:
    """A claim stores Queued -> Running in one statement: the entity never saw the change, so it is stated here."""
    return [JobTransition(JobStatusChanged(job.id, job.owner_id, JobStatus.QUEUED, JobStatus.RUNNING), copy.copy(job))]


class PublishingUnitOfWork(UnitOfWork):
    """Passes everything to `inner`; after a successful commit, publishes the transitions its jobs saved."""

    def __init__(self, inner: UnitOfWork, events: JobEvents) -> None:
        self._inner = inner
        self._events = events
        self._pending: list[JobTransition] = []

    async def __aenter__(self) -> Self:
        entered = await self._inner.__aenter__()
        self.reports, self.owners, self.idempotency = entered.reports, entered.owners, entered.idempotency
        self.jobs = _PublishingJobs(entered.jobs, self._pending)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pending.clear()  # not committed: nothing to announce
        await self._inner.__aexit__(exc_type, exc, tb)

    async def commit(self) -> None:
        await self._inner.commit()
        committed = self._pending[:]
        self._pending.clear()
        if committed:
            await self._events.publish(committed)


class _PublishingJobs(JobRepository):
    def __init__(self, inner: JobRepository, pending: list[JobTransition]) -> None:
        self._inner = inner
        self._pending = pending

    async def update(self, job: JobExecutionLog) -> None:
        saving = _saving(job)
        await self._inner.update(job)
        self._pending.extend(saving)

    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        job = await self._inner.claim(job_id, now, lease_until)
        if job is not None:
            self._pending.extend(_claimed(job))
        return job

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        return await self._inner.get(job_id)

    async def add(
        self, job: JobExecutionLog, *, default_limit: int = 0, as_read: ReportConfiguration | None = None
    ) -> Admission:
        return await self._inner.add(job, default_limit=default_limit, as_read=as_read)

    async def list_unfinished(self, limit: int) -> list[JobExecutionLog]:
        return await self._inner.list_unfinished(limit)

    async def list_expired(self, now: datetime, limit: int) -> list[JobExecutionLog]:
        return await self._inner.list_expired(now, limit)

    async def heartbeat(self, job: JobExecutionLog) -> bool:
        return await self._inner.heartbeat(job)


class PublishingJobLedger(JobLedger):
    """Passes everything to `inner`, whose every claim and save is committed when it returns: publishes the
    transitions each stored. (The ledger built on units of work needs no wrapper: its units publish.)"""

    def __init__(self, inner: JobLedger, events: JobEvents) -> None:
        self._inner = inner
        self._events = events

    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        job = await self._inner.claim(job_id, now, lease_until)
        if job is not None:
            await self._events.publish(_claimed(job))
        return job

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        return await self._inner.get(job_id)

    async def save(self, job: JobExecutionLog) -> None:
        saving = _saving(job)
        await self._inner.save(job)
        if saving:
            await self._events.publish(saving)

    async def renew_leases(self, jobs: Sequence[JobExecutionLog]) -> set[UUID]:
        return await self._inner.renew_leases(jobs)
