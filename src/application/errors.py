"""Errors raised by ports and use cases that are not business rules: unavailable dependencies, failed queries."""

from __future__ import annotations


class ApplicationError(Exception):
    """Base of every application error."""


class DependencyUnavailable(ApplicationError):
    """Something the service depends on cannot serve now; retrying later may succeed. `cause` names it in a word of a
    small fixed set (metrics label it by that word, so the set stays bounded)."""

    cause: str = "dependency"

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        if cause is not None:
            self.cause = cause


class StorageUnavailable(DependencyUnavailable):
    """The database could not be reached or answered with a transient error; retrying later may succeed.

    `cause` is `database`, or `database_pool` when every pooled connection stayed busy past the pool's timeout."""

    cause = "database"


class QueueUnavailable(DependencyUnavailable):
    """The job queue could not take the job; retrying later may succeed."""

    cause = "queue"


class ArtifactMissing(ApplicationError):
    """A Succeeded job's artifact is no longer in the artifact store."""


class ReportQueryFailed(ApplicationError):
    """The report's query failed for a reason that a retry will not fix; `message` is safe to show clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ReportTimedOut(ApplicationError):
    """The report's query ran past the statement timeout."""
