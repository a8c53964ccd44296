"""The polling side: a job's status and its result, read without a write transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID

from application.errors import ArtifactMissing
from application.ports import ArtifactStore, Clock, JobPosition, JobReader, JobSelection, JobSignals
from domain.errors import FieldError, InvalidInput, JobNotFound, NotPermitted, ResultExpired, ResultNotReady
from domain.jobs import ArtifactRef, JobExecutionLog, JobStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQuery:
    job_id: UUID
    user_id: str
    is_admin: bool = False
    wait_seconds: float = 0
    """Status only: how long to wait for the job to finish before answering with the status it has then."""


def visible_job(job: JobExecutionLog | None, query: JobQuery) -> JobExecutionLog:
    """The job if the caller may see it; someone else's job is reported exactly like a missing one."""
    if job is None or not job.visible_to(query.user_id, is_admin=query.is_admin):
        raise JobNotFound(query.job_id)
    return job


MIN_LINK_LIFETIME = timedelta(seconds=1)
"""A download link is valid at least this long, even for a result about to expire."""
MAX_WAIT_SECONDS = 60
"""The longest a status request may wait for its job to finish (`?wait=`): under the usual proxy read timeouts."""


class GetJobStatus:
    """A job as its owner (or an admin) sees it; anyone else is told it does not exist.

    With `wait_seconds`, the answer comes as soon as the job is terminal, or when the time is up with the status it
    has then (or at once when the server is stopping). The wait holds no database connection: the job is read when
    the wait starts and again each time the signals say it may have finished."""

    def __init__(self, jobs: JobReader, signals: JobSignals | None = None) -> None:
        self._jobs = jobs
        self._signals = signals

    async def execute(self, query: JobQuery) -> JobExecutionLog:
        if not 0 <= query.wait_seconds <= MAX_WAIT_SECONDS:  # also refuses NaN
            raise InvalidInput([FieldError("wait", f"must be a number of seconds from 0 to {MAX_WAIT_SECONDS}")])
        if query.wait_seconds == 0 or self._signals is None:
            return visible_job(await self._jobs.get(query.job_id), query)
        deadline = asyncio.get_running_loop().time() + query.wait_seconds
        async with self._signals.watch(query.job_id) as watch:  # before the read: a finish after it is not missed
            job = visible_job(await self._jobs.get(query.job_id), query)
            while not job.is_terminal:
                try:
                    async with asyncio.timeout_at(deadline):  # only the sleep: a read is never cut short
                        look_again = await watch.changed()
                except TimeoutError:
                    break
                if not look_again:
                    break
                job = visible_job(await self._jobs.get(query.job_id), query)
        return job


@dataclass(frozen=True, slots=True)
class JobResult:
    job: JobExecutionLog
    artifact: ArtifactRef
    artifacts: ArtifactStore
    checked_at: datetime
    """When the result was found available (not expired, present in the store)."""

    def content(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The artifact's bytes, `length` of them from `offset` (all that follow when None)."""
        return self.artifacts.read(self.artifact.key, offset, length)

    async def link(self, longest: timedelta) -> str | None:
        """A URL that downloads the artifact from the store itself (None when the store has none), valid for
        `longest` but never past the result's expiry."""
        valid = longest if self.job.expires_at is None else min(longest, self.job.expires_at - self.checked_at)
        return await self.artifacts.link(self.artifact.key, max(valid, MIN_LINK_LIFETIME))


class GetJobResult:
    """The artifact of a Succeeded job, streamed; ResultNotReady (with the status) for any other job, and
    ResultExpired once the artifact is past the retention period."""

    def __init__(self, jobs: JobReader, artifacts: ArtifactStore, clock: Clock) -> None:
        self._jobs = jobs
        self._artifacts = artifacts
        self._clock = clock

    async def execute(self, query: JobQuery) -> JobResult:
        job = visible_job(await self._jobs.get(query.job_id), query)
        if job.status is not JobStatus.SUCCEEDED:
            raise ResultNotReady(job.id, job.status.value)
        now = self._clock()
        if job.artifact is None or job.result_expired(now):
            raise ResultExpired(job.id)
        if not await self._artifacts.exists(job.artifact.key):
            raise ArtifactMissing(f"the artifact of job {job.id} is no longer available")
        return JobResult(job, job.artifact, self._artifacts, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListJobsQuery:
    user_id: str
    is_admin: bool = False
    selection: JobSelection = field(default_factory=JobSelection)
    limit: int = 20
    after: JobPosition | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[JobExecutionLog]
    next: JobPosition | None
    """Where the next page starts; None when this page is the last."""


class ListJobs:
    """The caller's jobs, newest first, a page at a time (admins: everyone's, or one owner's). A user may name
    themselves as the owner; naming someone else is forbidden."""

    def __init__(self, jobs: JobReader) -> None:
        self._jobs = jobs

    async def execute(self, query: ListJobsQuery) -> JobPage:
        selection = query.selection
        if not query.is_admin:
            if selection.owner_id not in (None, query.user_id):
                raise NotPermitted("only an admin may list another user's jobs")
            selection = replace(selection, owner_id=query.user_id)
        found = await self._jobs.list(selection, query.limit + 1, query.after)
        items = found[: query.limit]
        last = items[-1] if len(found) > query.limit else None
        return JobPage(items, None if last is None else JobPosition(last.created_at, last.id))
