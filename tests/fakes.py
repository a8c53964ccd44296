"""Hand-written fakes of the ports: dict-backed, in memory, sharing one ordered log of what happened."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self
from uuid import UUID

from application.errors import (
    ArtifactMissing,
    ArtifactStoreUnavailable,
    QueueUnavailable,
    StorageCause,
    StorageUnavailable,
)
from application.ports import (
    ArtifactLabel,
    ArtifactSink,
    ArtifactStore,
    CallbackOutbox,
    JobPosition,
    JobQueue,
    JobReader,
    JobSelection,
    JobSignals,
    JobWatch,
    RenderContext,
    ReportDataSource,
    Row,
    RowEncoder,
    RowStream,
    UnitOfWork,
    WebhookAnswer,
    WebhookMessage,
    WebhookSender,
)
from domain.callbacks import CallbackStatus
from domain.errors import ConcurrentUpdate, DuplicateIdempotencyKey
from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog, JobOwner, JobStatus
from domain.reports import Binding, ReportConfiguration
from domain.repositories import (
    Admission,
    IdempotencyRepository,
    JobOwnerRepository,
    JobRepository,
    ReportRepository,
)


@dataclass
class FakeDatabase:
    """What the fake unit of work commits to; `log` records commits and enqueues in order."""

    reports: dict[UUID, ReportConfiguration] = field(default_factory=dict)
    jobs: dict[UUID, JobExecutionLog] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    """Per-user limits an admin set (0: no limit)."""
    log: list[str] = field(default_factory=list)
    unavailable: bool = False
    unavailable_cause: StorageCause = "database"
    """What an unavailable database fails with: itself, or a pool with every connection busy (`database_pool`)."""
    fail_commit: bool = False

    def check(self) -> None:
        if self.unavailable:
            raise StorageUnavailable("the fake database is down", cause=self.unavailable_cause)


class FakeReportRepository(ReportRepository):
    def __init__(self, db: FakeDatabase, pending: dict[UUID, ReportConfiguration]) -> None:
        self._db = db
        self._pending = pending

    async def get(self, report_id: UUID) -> ReportConfiguration | None:
        self._db.check()
        report = self._pending.get(report_id) or self._db.reports.get(report_id)
        return None if report is None or report.deleted_at else copy.copy(report)

    async def list(self) -> list[ReportConfiguration]:
        self._db.check()
        merged = {**self._db.reports, **self._pending}
        return sorted((r for r in merged.values() if not r.deleted_at), key=lambda r: r.name)

    async def add(self, report: ReportConfiguration) -> None:
        self._pending[report.id] = copy.copy(report)

    async def update(self, report: ReportConfiguration) -> bool:
        if await self.get(report.id) is None:
            return False
        self._pending[report.id] = copy.copy(report)
        return True

    async def delete(self, report_id: UUID) -> bool:
        report = await self.get(report_id)
        if report is None:
            return False
        report.deleted_at = datetime.now(UTC)
        self._pending[report_id] = report
        return True


class FakeJobRepository(JobRepository):
    def __init__(self, db: FakeDatabase, pending: dict[UUID, JobExecutionLog]) -> None:
        self._db = db
        self._pending = pending

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        self._db.check()
        job = self._pending.get(job_id) or self._db.jobs.get(job_id)
        return copy.deepcopy(job)

    async def add(
        self, job: JobExecutionLog, *, default_limit: int = 0, as_read: ReportConfiguration | None = None
    ) -> Admission:
        self._db.check()
        report = self._db.reports.get(job.report_id)
        if as_read is not None and (report is None or report.deleted_at or report.updated_at != as_read.updated_at):
            return Admission.REPORT_CHANGED
        limit = self._db.limits.get(job.owner_id, default_limit)
        if limit and not job.is_terminal and self._active(job.owner_id) >= limit:
            return Admission.TOO_MANY_ACTIVE
        job.saved()
        self._pending[job.id] = copy.deepcopy(job)
        return Admission.QUEUED

    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        job = await self.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            return None
        job.start(now, lease_until)
        await self.update(job)
        return job

    async def update(self, job: JobExecutionLog) -> None:
        self._db.check()
        stored = self._pending.get(job.id) or self._db.jobs.get(job.id)
        if stored is None or stored.version != job.version:
            raise ConcurrentUpdate(job.id)
        job.version += 1
        content = job.artifact.content if job.artifact is not None else None
        job.saved()
        saved = copy.deepcopy(job)
        if saved.artifact is not None and content is not None:  # kept with the row, as the real repositories do
            saved.artifact = dataclasses.replace(saved.artifact, content=content)
        self._pending[job.id] = saved

    async def list_unfinished(self, limit: int) -> list[JobExecutionLog]:
        self._db.check()
        jobs = sorted(self._db.jobs.values(), key=lambda j: j.created_at)
        return [copy.deepcopy(j) for j in jobs if not j.is_terminal][:limit]

    async def list_expired(self, now: datetime, limit: int) -> list[JobExecutionLog]:
        self._db.check()
        expired = [j for j in self._db.jobs.values() if j.result_expired(now) and j.artifact is not None]
        return [copy.deepcopy(j) for j in sorted(expired, key=lambda j: j.expires_at or now)][:limit]

    def _active(self, owner_id: str) -> int:
        merged = {**self._db.jobs, **self._pending}
        return sum(1 for j in merged.values() if j.owner_id == owner_id and not j.is_terminal)

    async def heartbeat(self, job: JobExecutionLog) -> bool:
        self._db.check()
        stored = self._pending.get(job.id) or self._db.jobs.get(job.id)
        if stored is None or stored.status is not JobStatus.RUNNING or stored.attempts != job.attempts:
            return False
        stored = copy.deepcopy(stored)
        stored.progress = max(stored.progress, job.progress)
        stored.lease_expires_at = job.lease_expires_at
        self._pending[job.id] = stored
        return True


class FakeJobOwnerRepository(JobOwnerRepository):
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def get(self, owner_id: str) -> JobOwner:
        self._db.check()
        active = sum(1 for j in self._db.jobs.values() if j.owner_id == owner_id and not j.is_terminal)
        return JobOwner(owner_id, active, self._db.limits.get(owner_id))

    async def set_limit(self, owner_id: str, max_active_jobs: int | None) -> JobOwner:
        self._db.check()
        if max_active_jobs is None:
            self._db.limits.pop(owner_id, None)
        else:
            self._db.limits[owner_id] = max_active_jobs
        return await self.get(owner_id)


class FakeIdempotencyRepository(IdempotencyRepository):
    def __init__(self, db: FakeDatabase, pending: dict[tuple[str, str], IdempotencyRecord | None]) -> None:
        self._db = db
        self._pending = pending

    async def get(self, owner_id: str, key: str) -> IdempotencyRecord | None:
        self._db.check()
        if (owner_id, key) in self._pending:
            return self._pending[owner_id, key]
        return self._db.idempotency.get((owner_id, key))

    async def add(self, record: IdempotencyRecord) -> None:
        existing = await self.get(record.owner_id, record.key)
        if existing is not None and existing.live(record.created_at):
            raise DuplicateIdempotencyKey(record.key)
        self._pending[record.owner_id, record.key] = record

    async def delete(self, owner_id: str, key: str) -> None:
        self._pending[owner_id, key] = None

    async def purge(self, created_before: datetime) -> int:
        old = [k for k, r in self._db.idempotency.items() if r.created_at < created_before]
        for k in old:
            self._pending[k] = None
        return len(old)


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self._pending_reports: dict[UUID, ReportConfiguration] = {}
        self._pending_jobs: dict[UUID, JobExecutionLog] = {}
        self._pending_keys: dict[tuple[str, str], IdempotencyRecord | None] = {}
        self.reports = FakeReportRepository(db, self._pending_reports)
        self.jobs = FakeJobRepository(db, self._pending_jobs)
        self.owners = FakeJobOwnerRepository(db)
        self.idempotency = FakeIdempotencyRepository(db, self._pending_keys)
        self.committed = False

    async def __aenter__(self) -> Self:
        self._db.check()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pending_reports.clear()
        self._pending_jobs.clear()
        self._pending_keys.clear()

    async def commit(self) -> None:
        self._db.check()
        if self._db.fail_commit:
            raise StorageUnavailable("the fake commit failed")
        self._db.reports.update(self._pending_reports)
        self._db.jobs.update(self._pending_jobs)
        for key, record in self._pending_keys.items():
            if record is None:
                self._db.idempotency.pop(key, None)
            elif (live := self._db.idempotency.get(key)) is not None and live.live(record.created_at):
                raise DuplicateIdempotencyKey(record.key)  # a concurrent unit of work committed it first
            else:
                self._db.idempotency[key] = record
        self._db.log.extend(f"commit {job_id}" for job_id in self._pending_jobs)
        self._pending_reports.clear()
        self._pending_jobs.clear()
        self._pending_keys.clear()
        self.committed = True


class FakeJobReader(JobReader):
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        self._db.check()
        return copy.deepcopy(self._db.jobs.get(job_id))

    async def list(
        self, selection: JobSelection, limit: int, after: JobPosition | None = None
    ) -> list[JobExecutionLog]:
        self._db.check()
        chosen = [job for job in self._db.jobs.values() if _selected(job, selection)]
        chosen.sort(key=lambda job: (job.created_at, job.id), reverse=True)
        if after is not None:
            chosen = [job for job in chosen if (job.created_at, job.id) < (after.created_at, after.job_id)]
        return copy.deepcopy(chosen[:limit])


class FakeJobSignals(JobSignals):
    """Waiters by job id; the test wakes them (`notify`), or stops the server (`close`). `watches` counts the watches
    opened, so a test can tell that a request waited."""

    def __init__(self) -> None:
        self.events: dict[UUID, list[asyncio.Event]] = {}
        self.closing = False
        self.watches = 0

    @asynccontextmanager
    async def watch(self, job_id: UUID) -> AsyncIterator[JobWatch]:
        event = asyncio.Event()
        self.events.setdefault(job_id, []).append(event)
        self.watches += 1
        try:
            yield _FakeWatch(self, event)
        finally:
            self.events[job_id].remove(event)

    def notify(self, job_id: UUID) -> None:
        for event in self.events.get(job_id, []):
            event.set()

    def close(self) -> None:
        self.closing = True
        for events in self.events.values():
            for event in events:
                event.set()


@dataclass
class _FakeWatch(JobWatch):
    signals: FakeJobSignals
    event: asyncio.Event

    async def changed(self) -> bool:
        if not self.signals.closing:
            await self.event.wait()
            self.event.clear()
        return not self.signals.closing


def _selected(job: JobExecutionLog, selection: JobSelection) -> bool:
    return (
        selection.owner_id in (None, job.owner_id)
        and (selection.statuses is None or job.status in selection.statuses)
        and selection.report_id in (None, job.report_id)
        and (selection.created_after is None or job.created_at > selection.created_after)
        and (selection.created_before is None or job.created_at < selection.created_before)
    )


class FakeCallbackOutbox(CallbackOutbox):
    """The job rows of a FakeDatabase as the webhook outbox: claims and records keep the SQL's rules."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def claim_due(self, now: datetime, held_until: datetime, limit: int) -> list[JobExecutionLog]:
        self._db.check()
        due = [
            job
            for job in self._db.jobs.values()
            if job.callback is not None
            and job.callback.status is CallbackStatus.PENDING
            and job.callback.next_attempt_at is not None
            and job.callback.next_attempt_at <= now
        ]
        due.sort(key=lambda job: job.callback.next_attempt_at if job.callback and job.callback.next_attempt_at else now)
        for job in due[:limit]:
            assert job.callback is not None
            job.callback = replace(job.callback, next_attempt_at=held_until)
            job.version += 1
        return copy.deepcopy(due[:limit])

    async def record(self, job: JobExecutionLog) -> None:
        self._db.check()
        stored = self._db.jobs.get(job.id)
        if stored is None or stored.version != job.version:
            raise ConcurrentUpdate(job.id)
        job.version += 1
        self._db.jobs[job.id] = copy.deepcopy(job)


class FakeWebhookSender(WebhookSender):
    """Answers each message with the next of `answers` (the last one again once they run out); keeps what it sent."""

    def __init__(self, *answers: WebhookAnswer) -> None:
        self.answers = list(answers) or [WebhookAnswer(204)]
        self.sent: list[WebhookMessage] = []

    async def send(self, message: WebhookMessage) -> WebhookAnswer:
        self.sent.append(message)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class FakeJobQueue(JobQueue):
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self.enqueued: list[UUID] = []
        self.deliveries: list[tuple[UUID, int, float]] = []
        self.aborted: list[tuple[UUID, int]] = []
        self.fail = False

    async def enqueue(self, job_id: UUID, *, attempt: int = 1, delay_seconds: float = 0) -> None:
        if self.fail:
            raise QueueUnavailable("the fake queue is down")
        if (job_id, attempt) not in {(j, a) for j, a, _ in self.deliveries}:
            self.deliveries.append((job_id, attempt, delay_seconds))
        if job_id not in self.enqueued:
            self.enqueued.append(job_id)
            self._db.log.append(f"enqueue {job_id}")

    async def abort(self, job_id: UUID, attempt: int) -> None:
        if self.fail:
            raise QueueUnavailable("the fake queue is down")
        self.aborted.append((job_id, attempt))


class FakeSink(ArtifactSink):
    def __init__(self, *, left_to_the_ledger: bool = False) -> None:
        self.buffer = bytearray()
        self.left_to_the_ledger = left_to_the_ledger

    @property
    def content(self) -> bytes | None:
        return bytes(self.buffer) if self.left_to_the_ledger else None

    async def write(self, chunk: bytes) -> None:
        self.buffer.extend(chunk)

    @property
    def size(self) -> int:
        return len(self.buffer)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.buffer).hexdigest()


class FakeArtifactStore(ArtifactStore):
    """Artifacts in a dict; `links` makes `link` answer `https://store.example/<key>?expires=<seconds>`."""

    def __init__(self, *, links: bool = False, small_to_the_ledger: bool = False) -> None:
        self.files: dict[str, bytes] = {}
        self.labels: dict[str, ArtifactLabel | None] = {}
        self.links = links
        self.small_to_the_ledger = small_to_the_ledger
        """Leave every artifact to be saved with its job (`ArtifactSink.content`), as the database's store does."""
        self.unavailable = False
        """Every call raises ArtifactStoreUnavailable, as when object storage is down."""

    def _check(self) -> None:
        if self.unavailable:
            raise ArtifactStoreUnavailable("the artifact store is down")

    def create(self, key: str, label: ArtifactLabel | None = None) -> AbstractAsyncContextManager[ArtifactSink]:
        self.labels[key] = label
        return self._create(key)

    @asynccontextmanager
    async def _create(self, key: str) -> AsyncIterator[ArtifactSink]:
        self._check()
        sink = FakeSink(left_to_the_ledger=self.small_to_the_ledger)
        yield sink
        self._check()
        if sink.content is None:
            self.files[key] = bytes(sink.buffer)

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        self._check()
        if key not in self.files:
            raise ArtifactMissing(key)
        yield self.files[key][offset : None if length is None else offset + length]

    async def exists(self, key: str) -> bool:
        self._check()
        return key in self.files

    async def delete(self, key: str) -> None:
        self._check()
        self.files.pop(key, None)

    async def sweep_temporary(self, older_than_seconds: float) -> int:
        return 0

    async def link(self, key: str, expires_in: timedelta) -> str | None:
        self._check()
        return f"https://store.example/{key}?expires={expires_in.total_seconds():g}" if self.links else None


@dataclass
class FakeRowStream(RowStream):
    columns: Sequence[str]
    rows: Sequence[Row]
    estimated_rows: int | None = None
    batch_size: int = 2
    error_after_rows: Exception | None = None

    async def batches(self) -> AsyncIterator[Sequence[Row]]:
        for start in range(0, len(self.rows), self.batch_size):
            yield self.rows[start : start + self.batch_size]
        if self.error_after_rows is not None:
            raise self.error_after_rows


class FakeReportDataSource(ReportDataSource):
    """Answers every query with the same columns and rows, or raises the error it was given."""

    def __init__(self, columns: Sequence[str] = ("n",), rows: Sequence[Row] = ((1,), (2,), (3,))) -> None:
        self.columns = columns
        self.rows = rows
        self.error: Exception | None = None
        self.error_after_rows: Exception | None = None
        self.calls: list[tuple[str, Sequence[Binding]]] = []

    def run(
        self, query: str, bindings: Sequence[Binding], timeout_seconds: float
    ) -> AbstractAsyncContextManager[RowStream]:
        self.calls.append((query, bindings))
        return self._run()

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[RowStream]:
        if self.error is not None:
            raise self.error
        yield FakeRowStream(self.columns, self.rows, error_after_rows=self.error_after_rows)


class LinesEncoder(RowEncoder):
    """A trivial format for use-case tests: a header line, then one comma-joined line per row, and the title of the
    context it was made for as the last line."""

    def __init__(self, context: RenderContext) -> None:
        self.context = context

    def begin(self, columns: Sequence[str]) -> bytes:
        return (",".join(columns) + "\n").encode()

    def encode(self, rows: Sequence[Row]) -> bytes:
        return b"".join((",".join(map(str, row)) + "\n").encode() for row in rows)

    async def end(self) -> AsyncIterator[bytes]:
        yield f"# {self.context.title}\n".encode()


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
