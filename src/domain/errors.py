"""Domain errors: what can go wrong according to the business rules, independent of any transport."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


class DomainError(Exception):
    """Base of every error that the domain raises."""


class ReportNotFound(DomainError):
    def __init__(self, report_id: UUID) -> None:
        super().__init__(f"report {report_id} does not exist")
        self.report_id = report_id


class ReportNotAsyncDeliverable(DomainError):
    def __init__(self, report_id: UUID, reason: str) -> None:
        super().__init__(f"report {report_id} is not configured for asynchronous API delivery: {reason}")
        self.report_id = report_id
        self.reason = reason


class JobNotFound(DomainError):
    def __init__(self, job_id: UUID) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class NotPermitted(DomainError):
    """The caller may not do this (for instance list another user's jobs without being an admin)."""


class ResultNotReady(DomainError):
    def __init__(self, job_id: UUID, status: str) -> None:
        super().__init__(f"job {job_id} has no result: its status is {status}")
        self.job_id = job_id
        self.status = status


class JobAlreadyFinished(DomainError):
    """A cancel of a job that is already Succeeded, Failed or Cancelled."""

    def __init__(self, job_id: UUID, status: str) -> None:
        super().__init__(f"job {job_id} has already finished: its status is {status}")
        self.job_id = job_id
        self.status = status


class ResultExpired(DomainError):
    """The job succeeded, but its artifact is past the retention period."""

    def __init__(self, job_id: UUID) -> None:
        super().__init__(f"the result of job {job_id} has expired and was deleted")
        self.job_id = job_id


class TooManyActiveJobs(DomainError):
    """The user already has the maximum number of Queued or Running jobs."""

    def __init__(self) -> None:
        super().__init__("you already have as many jobs queued or running as you may; wait for one to finish")


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key that this user already used for a different request."""

    def __init__(self, key: str) -> None:
        super().__init__("this Idempotency-Key was already used with a different request")
        self.key = key


class DuplicateIdempotencyKey(DomainError):
    """Raised by the idempotency repository when another request stored the same key first."""


class InvalidJobTransition(DomainError):
    def __init__(self, job_id: UUID, current: str, wanted: str) -> None:
        super().__init__(f"job {job_id} cannot go from {current} to {wanted}")
        self.current = current
        self.wanted = wanted


class ConcurrentUpdate(DomainError):
    """Another writer changed the record since it was read; the caller's change was not applied."""

    def __init__(self, entity_id: UUID) -> None:
        super().__init__(f"{entity_id} was changed by another writer")
        self.entity_id = entity_id


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: `field` is a dotted path in the request (`parameters.since`, `format`)."""

    field: str
    message: str


class InvalidInput(DomainError):
    """Well-formed input that breaks a rule; carries one entry per offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class InvalidParameters(InvalidInput):
    """Report parameters or output format that the report configuration does not accept."""


class InvalidReportDefinition(InvalidInput):
    """A report configuration that cannot be stored (bad query, parameter or format definitions)."""
