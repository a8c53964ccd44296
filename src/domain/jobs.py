"""Job execution logs: one run of a report for one user, and the state machine it follows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.callbacks import Callback, webhook_id
from domain.errors import InvalidJobTransition
from domain.formats import extension_of, media_type_of
from domain.reports import (
    Binding,
    Chart,
    ParameterType,
    ParamValue,
    ReportConfiguration,
    ResolvedRequest,
    bindings,
)


class JobStatus(StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# Running -> Queued hands a job back to the queue (a transient failure, a worker shutting down).
_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}),
}


class ErrorCode(StrEnum):
    REPORT_QUERY_FAILED = "REPORT_QUERY_FAILED"
    REPORT_TIMEOUT = "REPORT_TIMEOUT"
    QUEUE_UNAVAILABLE = "QUEUE_UNAVAILABLE"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    WORKER_LOST = "WORKER_LOST"
    WORKER_STOPPED = "WORKER_STOPPED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    INVALID_CHART = "INVALID_CHART"
    """The report's chart names a column that the query does not return."""
    OUTPUT_FAILED = "OUTPUT_FAILED"
    """The rows could not be written in the job's format (e.g. a Parquet column whose values change type)."""
    FORMAT_UNAVAILABLE = "FORMAT_UNAVAILABLE"
    """The worker that ran the job lacks the optional library of its format."""
    ARTIFACT_STORE_UNAVAILABLE = "ARTIFACT_STORE_UNAVAILABLE"
    """The artifact store (object storage) could not take the result; the job is retried (the error of a Queued
    job between attempts; once the attempts are used up, RETRIES_EXHAUSTED)."""


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed (or why its last attempt did). `message` is for whoever may see the job: what they can act
    on, never data or SQL from the report. `detail` is the database's own message, for admins only: it can quote
    values and names from a query that only admins may read."""

    code: str
    message: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """Where a finished artifact is kept and what it is: the store's key, its size and content hash."""

    key: str
    size: int
    sha256: str
    content: bytes | None = field(default=None, repr=False, compare=False)
    """The artifact's bytes while they wait to be saved with the job's row, in the transaction that records its
    outcome (a store that keeps small artifacts in the job ledger's database leaves them here); None once saved,
    and for an artifact that its store published itself."""


@dataclass(frozen=True, slots=True)
class JobStatusChanged:
    """A job moved from one status to another: recorded by the entity, announced once the change is committed."""

    job_id: UUID
    owner_id: str
    old: JobStatus
    new: JobStatus

    @property
    def ends_activity(self) -> bool:
        """The job left Queued/Running for a terminal status: it no longer counts among its owner's active jobs."""
        return not self.old.is_terminal and self.new.is_terminal


@dataclass(frozen=True, slots=True)
class JobOwner:
    """A user as the active-job limit sees them: how many of their jobs are Queued or Running, and the limit an
    admin gave them (None: the service's default, `REPORTGEN_MAX_ACTIVE_JOBS_PER_USER`; 0: no limit)."""

    owner_id: str
    active_jobs: int = 0
    max_active_jobs: int | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class JobExecutionLog:
    """One requested run of a report. It owns its state machine; terminal statuses never change.

    The report's name, query, parameter types and output options are copied in when the job is created, so that a job
    runs the report as it was accepted even if the report is changed or deleted afterwards.
    """

    id: UUID
    report_id: UUID
    owner_id: str
    report_name: str
    query: str
    format: str
    parameters: dict[str, ParamValue]
    parameter_types: dict[str, ParameterType]
    created_at: datetime
    chart: Chart | None = None
    csv_formula_escape: bool = False
    status: JobStatus = JobStatus.QUEUED
    progress: int = 0
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: JobError | None = None
    artifact: ArtifactRef | None = None
    request_id: str | None = None
    lease_expires_at: datetime | None = None
    """While Running: until when the worker running it is known to be alive (renewed by its heartbeat)."""
    expires_at: datetime | None = None
    """When Succeeded: when its artifact is deleted under the retention policy."""
    callback: Callback | None = None
    """The webhook called when the job ends, if its requester asked for one."""
    version: int = field(default=0)
    events: list[JobStatusChanged] = field(default_factory=list, compare=False, repr=False)
    """Status changes not yet saved, oldest first (see `saved`)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobExecutionLog) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @classmethod
    def queue(
        cls,
        *,
        job_id: UUID,
        report: ReportConfiguration,
        request: ResolvedRequest,
        owner_id: str,
        now: datetime,
        request_id: str | None = None,
        callback: Callback | None = None,
    ) -> JobExecutionLog:
        """A new job in status Queued for a report that accepts asynchronous API delivery."""
        report.ensure_async_api_delivery()
        return cls(
            id=job_id,
            report_id=report.id,
            owner_id=owner_id,
            report_name=report.name,
            query=report.query,
            format=request.format,
            parameters=request.parameters,
            parameter_types=request.parameter_types,
            created_at=now,
            chart=report.chart,
            csv_formula_escape=report.csv_formula_escape,
            request_id=request_id,
            callback=callback,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def visible_to(self, user_id: str, *, is_admin: bool) -> bool:
        return is_admin or self.owner_id == user_id

    def bindings(self) -> Sequence[Binding]:
        return bindings(self.parameters, self.parameter_types, self.query)

    def start(self, now: datetime, lease_until: datetime) -> None:
        """A worker takes the job: a new attempt, leased to that worker until `lease_until`."""
        self._move_to(JobStatus.RUNNING)
        self.attempts += 1
        self.started_at = now
        self.error = None
        self.lease_expires_at = lease_until

    def lease_expired(self, now: datetime) -> bool:
        """Running, but its worker stopped renewing the lease: the worker is presumed lost."""
        return self.status is JobStatus.RUNNING and (self.lease_expires_at is None or self.lease_expires_at <= now)

    def renew_lease(self, until: datetime) -> None:
        if self.status is JobStatus.RUNNING:
            self.lease_expires_at = until

    def report_progress(self, percent: int) -> bool:
        """Raise progress (never lower it; 100 is kept for success). Returns whether it changed."""
        if self.status is not JobStatus.RUNNING:
            return False
        percent = max(0, min(99, percent))
        if percent <= self.progress:
            return False
        self.progress = percent
        return True

    def succeed(self, now: datetime, artifact: ArtifactRef, expires_at: datetime | None = None) -> None:
        self._move_to(JobStatus.SUCCEEDED)
        self.progress = 100
        self.artifact = artifact
        self.finished_at = now
        self.expires_at = expires_at
        self.lease_expires_at = None
        self._schedule_callback(now)

    def fail(self, now: datetime, code: str, message: str, detail: str | None = None) -> None:
        self._move_to(JobStatus.FAILED)
        self.error = JobError(code, message, detail)
        self.finished_at = now
        self.lease_expires_at = None
        self._schedule_callback(now)

    def cancel(self, now: datetime) -> None:
        self._move_to(JobStatus.CANCELLED)
        self.finished_at = now
        self.lease_expires_at = None
        self._schedule_callback(now)

    def requeue(self, reason: JobError | None = None) -> None:
        """Hand a running job back to the queue; the error of the last attempt stays visible."""
        self._move_to(JobStatus.QUEUED)
        self.error = reason
        self.lease_expires_at = None

    def release_from_lost_worker(self, now: datetime, max_attempts: int) -> None:
        """The worker running this job is gone: retry it as a new attempt, or fail it with WORKER_LOST once it
        has had `max_attempts`."""
        if self.attempts >= max_attempts:
            message = f"The worker running the report was lost in all {self.attempts} attempts."
            self.fail(now, ErrorCode.WORKER_LOST, message)
        else:
            self.requeue(JobError(ErrorCode.WORKER_LOST, "The worker running the report was lost; retrying."))

    def result_expired(self, now: datetime) -> bool:
        """Succeeded, and its artifact is past the retention period (deleted, or about to be)."""
        return self.expires_at is not None and self.expires_at <= now

    def discard_artifact(self) -> None:
        """The retention sweep deleted the artifact; the job stays Succeeded, its result is Gone."""
        if self.status is not JobStatus.SUCCEEDED:
            raise InvalidJobTransition(self.id, self.status.value, "artifact discarded")
        self.artifact = None

    @property
    def content_type(self) -> str:
        return media_type_of(self.format)

    @property
    def filename(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.report_name).strip("-").lower()[:60] or "report"
        return f"{slug}-{str(self.id)[:8]}.{extension_of(self.format)}"

    def artifact_key(self) -> str:
        """Each attempt writes its own artifact, so two attempts can never mix or half-overwrite one file."""
        return f"{self.id}/attempt-{self.attempts}.{self.format}"

    @property
    def ends_activity(self) -> bool:
        """Whether the changes not yet saved take the job out of its owner's active jobs."""
        return any(event.ends_activity for event in self.events)

    def _schedule_callback(self, now: datetime) -> None:
        """The job ended: its callback is due now, saved with the terminal status (in the same write), so that no
        crash after the commit can lose it."""
        if self.callback is not None:
            self.callback = self.callback.scheduled(now)

    @property
    def webhook_id(self) -> str:
        return webhook_id(self.id)

    def saved(self) -> list[JobStatusChanged]:
        """The store kept the changes (and the artifact's content, if it had to keep it): hand over the status changes
        they made (for announcing) and forget them."""
        if self.artifact is not None and self.artifact.content is not None:
            self.artifact = replace(self.artifact, content=None)
        events, self.events = self.events, []
        return events

    def _move_to(self, target: JobStatus) -> None:
        if target not in _ALLOWED.get(self.status, frozenset()):
            raise InvalidJobTransition(self.id, self.status.value, target.value)
        self.events.append(JobStatusChanged(self.id, self.owner_id, self.status, target))
        self.status = target
