"""Errors raised by ports and use cases that are not business rules: unavailable dependencies, failed queries."""

from __future__ import annotations

from typing import Literal

StorageCause = Literal["database", "database_pool", "database_timeout"]
DependencyCause = StorageCause | Literal["queue", "artifact_store"]
"""What was unavailable, in one word of a fixed set: metrics and logs label a 503 with it, so the set stays small."""


class ApplicationError(Exception):
    """Base of every application error."""


class DependencyUnavailable(ApplicationError):
    """Something the service depends on cannot serve now; retrying later may succeed. Raised as one of its
    subclasses, whose `cause` names what was unavailable."""

    cause: DependencyCause


class StorageUnavailable(DependencyUnavailable):
    """The database could not be reached or answered with a transient error; retrying later may succeed.

    `cause` is `database`, `database_pool` when every pooled connection stayed busy past the pool's timeout
    (the database itself may be fine: every connection this process may open was in use), or `database_timeout`
    when a statement waited for a lock or ran past its timeout (something else held what it needed)."""

    def __init__(self, message: str, *, cause: StorageCause = "database") -> None:
        super().__init__(message)
        self.cause = cause


class QueueUnavailable(DependencyUnavailable):
    """The job queue could not take the job; retrying later may succeed."""

    cause: DependencyCause = "queue"


class ArtifactStoreUnavailable(DependencyUnavailable):
    """The artifact store (object storage) could not be reached or refused the request; retrying later may
    succeed."""

    cause: DependencyCause = "artifact_store"


class ArtifactMissing(ApplicationError):
    """A Succeeded job's artifact is no longer in the artifact store."""


class ReportQueryFailed(ApplicationError):
    """The report's query failed for a reason that a retry will not fix. `message` is safe to show whoever may see
    the job: what they can act on, with no data or SQL from the query. `detail`, when there is one, is the
    database's own message, for admins only."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ReportOutputFailed(ApplicationError):
    """The rows could not be written in the job's format, for a reason that a retry will not fix: a chart naming a
    column the query does not return, a Parquet column whose values change type. `code` is the job's error code,
    `message` is safe to show whoever may see the job."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ReportTimedOut(ApplicationError):
    """The report's query ran past the statement timeout."""
