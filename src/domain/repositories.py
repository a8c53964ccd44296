"""Repository ports. Implementations live in infrastructure; fakes in tests/fakes.py."""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from enum import Enum
from typing import Protocol
from uuid import UUID

from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog, JobOwner
from domain.reports import ReportConfiguration


class Admission(Enum):
    """What became of a new job offered to the store."""

    QUEUED = "queued"
    REPORT_CHANGED = "report_changed"
    """The report was updated or deleted since it was read: read it afresh and decide again."""
    TOO_MANY_ACTIVE = "too_many_active"


class ReportRepository(Protocol):
    """Report configurations inside a unit of work. Not committed until the unit of work commits.

    Raises application.errors.StorageUnavailable when the database cannot be reached.
    """

    @abstractmethod
    async def get(self, report_id: UUID) -> ReportConfiguration | None:
        """The live report, or None when it does not exist or was deleted."""

    @abstractmethod
    async def list(self) -> list[ReportConfiguration]:
        """Every live report, ordered by name."""

    @abstractmethod
    async def add(self, report: ReportConfiguration) -> None: ...

    @abstractmethod
    async def update(self, report: ReportConfiguration) -> bool:
        """Overwrite a live report's definition; False when there is none with that id."""

    @abstractmethod
    async def delete(self, report_id: UUID) -> bool:
        """Retire a live report (its jobs keep working); False when there is none with that id."""


class JobRepository(Protocol):
    """Job execution logs inside a unit of work. Not committed until the unit of work commits.

    Raises application.errors.StorageUnavailable when the database cannot be reached.
    """

    @abstractmethod
    async def get(self, job_id: UUID) -> JobExecutionLog | None: ...

    @abstractmethod
    async def add(
        self, job: JobExecutionLog, *, default_limit: int = 0, as_read: ReportConfiguration | None = None
    ) -> Admission:
        """Store a new Queued job, provided that its owner has fewer active (Queued or Running) jobs than their limit
        (the one an admin set for them, else `default_limit`; 0: no limit) and, when `as_read` is given, that the
        job's report is still live and unchanged since it was read as `as_read`.

        A job stored in a terminal status (only imports and tests do that) counts for nothing. Anything but QUEUED
        stores nothing. Exact under concurrency: one owner's admissions take turns on the
        owner's counter until the unit of work ends.
        """

    @abstractmethod
    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        """`JobExecutionLog.start(now, lease_until)` for a job that is still Queued: the job as saved, or None (and
        nothing changed) when it is not Queued: unknown, Running, finished, or claimed by another delivery."""

    @abstractmethod
    async def update(self, job: JobExecutionLog) -> None:
        """Save a job read earlier, guarded by its version (optimistic locking). A transition to a terminal status
        also takes the job out of its owner's active jobs, in the same transaction.

        Raises domain.errors.ConcurrentUpdate when another writer saved it first; on success the
        entity's version is incremented to match the stored row, and its events are handed over (`saved`).
        """

    @abstractmethod
    async def list_unfinished(self, limit: int) -> list[JobExecutionLog]:
        """Jobs that are Queued or Running, oldest first, at most `limit`."""

    @abstractmethod
    async def list_expired(self, now: datetime, limit: int) -> list[JobExecutionLog]:
        """Succeeded jobs whose `expires_at` has passed and whose artifact is still recorded, oldest first."""

    @abstractmethod
    async def heartbeat(self, job: JobExecutionLog) -> bool:
        """Store a Running job's lease and progress without touching its version.

        Returns False, changing nothing, when the job is no longer Running in this attempt (it was
        cancelled, or its lease expired and another worker took it over): the caller must stop.
        """


class JobOwnerRepository(Protocol):
    """Per-user job limits inside a unit of work. Raises StorageUnavailable when the database cannot be reached."""

    @abstractmethod
    async def get(self, owner_id: str) -> JobOwner:
        """The user's active jobs and own limit (a user who never had a job has none of either)."""

    @abstractmethod
    async def set_limit(self, owner_id: str, max_active_jobs: int | None) -> JobOwner:
        """Give the user a limit of their own (0: no limit), or None to follow the service's default again. The jobs
        the user has in flight count against it from then on, also those accepted while they had no limit."""


class IdempotencyRepository(Protocol):
    """Idempotency keys inside a unit of work. Raises StorageUnavailable when the database cannot be reached."""

    @abstractmethod
    async def get(self, owner_id: str, key: str) -> IdempotencyRecord | None: ...

    @abstractmethod
    async def add(self, record: IdempotencyRecord) -> None:
        """Store a key, replacing an expired record of the same user and key.

        Raises domain.errors.DuplicateIdempotencyKey when a live record exists or a concurrent transaction
        stored the same key first (it may surface at commit instead).
        """

    @abstractmethod
    async def delete(self, owner_id: str, key: str) -> None: ...

    @abstractmethod
    async def purge(self, created_before: datetime) -> int:
        """Delete records created before the cutoff; returns how many."""
