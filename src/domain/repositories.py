"""Repository ports. Implementations live in infrastructure; fakes in tests/fakes.py."""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol
from uuid import UUID

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
    async def save_progress(self, job: JobExecutionLog) -> None:
        """Store the progress of a Running job without touching its version; a no-op for any other status."""
