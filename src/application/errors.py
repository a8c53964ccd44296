"""Errors raised by ports and use cases that are not business rules: unavailable dependencies, failed queries."""

from __future__ import annotations


class ApplicationError(Exception):
    """Base of every application error."""


class StorageUnavailable(ApplicationError):
    """The database could not be reached or answered with a transient error; retrying later may succeed."""


class QueueUnavailable(ApplicationError):
    """The job queue could not take the job; retrying later may succeed."""


class ArtifactMissing(ApplicationError):
    """A Succeeded job's artifact is no longer in the artifact store."""


class ReportQueryFailed(ApplicationError):
    """The report's query failed for a reason that a retry will not fix; `message` is safe to show clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ReportTimedOut(ApplicationError):
    """The report's query ran past the statement timeout."""
