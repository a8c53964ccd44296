"""Repository ports. Implementations live in infrastructure; fakes in tests/fakes.py."""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog
from domain.reports import ReportConfiguration


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
    async def add(self, job: JobExecutionLog) -> None: ...

    @abstractmethod
    async def update(self, job: JobExecutionLog) -> None:
        """Save a job read earlier, guarded by its version (optimistic locking).

        Raises domain.errors.ConcurrentUpdate when another writer saved it first; on success the
        entity's version is incremented to match the stored row.
        """

    @abstractmethod
    async def list_unfinished(self, limit: int) -> list[JobExecutionLog]:
        """Jobs that are Queued or Running, oldest first, at most `limit`."""

    @abstractmethod
    async def list_expired(self, now: datetime, limit: int) -> list[JobExecutionLog]:
        """Succeeded jobs whose `expires_at` has passed and whose artifact is still recorded, oldest first."""

    @abstractmethod
    async def count_active(self, owner_id: str) -> int:
        """How many of this user's jobs are Queued or Running.

        Also serializes concurrent callers for the same user until the unit of work ends (an advisory lock
        on PostgreSQL; SQLite serializes writers anyway), so that a limit checked with it cannot be overrun.
        """

    @abstractmethod
    async def heartbeat(self, job: JobExecutionLog) -> bool:
        """Store a Running job's lease and progress without touching its version.

        Returns False, changing nothing, when the job is no longer Running in this attempt (it was
        cancelled, or its lease expired and another worker took it over): the caller must stop.
        """


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
