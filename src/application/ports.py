"""Ports other than repositories: unit of work, job queue, job reads, artifact store, report data source."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from domain.idempotency import IdempotencyRecord
from domain.jobs import JobExecutionLog, JobStatus, JobStatusChanged
from domain.reports import Binding, Chart, ParamValue, ReportConfiguration
from domain.repositories import Admission, IdempotencyRepository, JobOwnerRepository, JobRepository, ReportRepository

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware UTC."""

IdFactory = Callable[[], UUID]


class UnitOfWork(Protocol):
    """One database transaction, used as `async with uow:`.

    Changes are kept only after an explicit `await uow.commit()`; leaving the block without it (or with
    an exception) rolls back. Raises StorageUnavailable when the database cannot be reached.
    """

    reports: ReportRepository
    jobs: JobRepository
    owners: JobOwnerRepository
    idempotency: IdempotencyRepository

    @abstractmethod
    async def __aenter__(self) -> Self: ...

    @abstractmethod
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    @abstractmethod
    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class JobAdmission(Protocol):
    """Where generate requests become Queued jobs: the reports they name, and the one write that records a job.

    `report` may answer from a cache; `admit` writes only if the report is still as it was read, so a cached
    report never starts a job that the current one would not. Both raise StorageUnavailable.
    """

    @abstractmethod
    async def report(self, report_id: UUID, *, fresh: bool = False) -> ReportConfiguration | None:
        """The live report (None if unknown or deleted), possibly as cached; `fresh` reads the database."""

    @abstractmethod
    async def admit(
        self,
        job: JobExecutionLog,
        *,
        report: ReportConfiguration,
        default_limit: int,
        idempotency: IdempotencyRecord | None = None,
    ) -> Admission:
        """Record `job` (and `idempotency`) in one transaction, provided that `report` is still current (neither
        updated nor deleted since it was read) and that the owner has fewer Queued or Running jobs than their
        limit (see JobRepository.add; `default_limit` 0: none), exactly, also under concurrent requests. Raises
        DuplicateIdempotencyKey when the key is taken."""


class JobLedger(Protocol):
    """Where a worker records a job's run: each call is one write of its own, committed when it returns (no
    transaction spans two calls), and every write is guarded, so that of two writers exactly one wins.

    Raises StorageUnavailable when the database cannot be reached.
    """

    @abstractmethod
    async def claim(self, job_id: UUID, now: datetime, lease_until: datetime) -> JobExecutionLog | None:
        """Start a Queued job as `JobExecutionLog.start(now, lease_until)` does; the job as saved, or None (and
        nothing changed) when it is not Queued: unknown, Running, finished, or claimed by another delivery."""

    @abstractmethod
    async def get(self, job_id: UUID) -> JobExecutionLog | None: ...

    @abstractmethod
    async def save(self, job: JobExecutionLog) -> None:
        """Save a transition of a job read earlier, guarded by its version (see JobRepository.update).

        Raises domain.errors.ConcurrentUpdate when another writer saved it first; on success the entity's
        version is incremented to match the stored row."""

    @abstractmethod
    async def renew_leases(self, jobs: Sequence[JobExecutionLog]) -> set[UUID]:
        """Store each Running job's lease and progress, without a new version (see JobRepository.heartbeat);
        the ids of those still Running in their attempt. The others changed nothing: their attempt must stop."""


@dataclass(frozen=True, slots=True)
class JobTransition:
    """A committed status change of a job, with the job as the same write saved it."""

    change: JobStatusChanged
    job: JobExecutionLog


class JobEvents(Protocol):
    """Where committed job transitions are announced: the one way the application says "job X went from A to B".

    Called by `application.job_events` right after the write that made the transitions committed, never before and
    never for a write that failed, oldest first. At most once per transition: a process that dies between its
    commit and this call announces nothing, so whatever must not be lost (a webhook) is recorded by the write itself
    and only hastened by an announcement. Never raises: a subscriber's failure is its own.
    """

    @abstractmethod
    async def publish(self, transitions: Sequence[JobTransition]) -> None: ...


class JobSignals(Protocol):
    """Wakes the requests waiting for a job to finish (`GET /jobs/{id}?wait=`), in whichever process it finished.

    A waiter holds no database connection: it registers, reads the job, and sleeps until a signal or its deadline.
    A signal means "look again", never "it finished": a waiter always re-reads the job.
    """

    @abstractmethod
    def watch(self, job_id: UUID) -> AbstractAsyncContextManager[JobWatch]:
        """Register interest in `job_id` for the block: a signal sent once it is entered is not missed."""


class JobWatch(Protocol):
    @abstractmethod
    async def changed(self) -> bool:
        """Sleep until the job may have finished or the signals were lost for a while (True: read it again), or
        until the server is stopping (False: stop waiting, answer now). The caller bounds it with a timeout."""


class JobReader(Protocol):
    """Read-only access to jobs for the polling paths: one query, no write transaction, no lock.

    Raises StorageUnavailable when the database cannot be reached.
    """

    @abstractmethod
    async def get(self, job_id: UUID) -> JobExecutionLog | None: ...

    @abstractmethod
    async def list(
        self, selection: JobSelection, limit: int, after: JobPosition | None = None
    ) -> list[JobExecutionLog]:
        """At most `limit` jobs of `selection`, newest first (by `created_at`, then `id`), those after `after` in
        that order when given: a page costs the same however deep it is."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSelection:
    """Which jobs a list holds: None in a field means any."""

    owner_id: str | None = None
    statuses: frozenset[JobStatus] | None = None
    report_id: UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobPosition:
    """A place in the newest-first order of jobs: the last job of a page."""

    created_at: datetime
    job_id: UUID


class CallbackOutbox(Protocol):
    """The webhook deliveries that ended jobs owe (their state is saved with the terminal transition). Each call is
    one write of its own, committed when it returns. Raises StorageUnavailable when the database cannot be reached.
    """

    @abstractmethod
    async def claim_due(self, now: datetime, held_until: datetime, limit: int) -> list[JobExecutionLog]:
        """Up to `limit` jobs whose pending callback is due at `now`, each held for the caller until `held_until`
        (its `next_attempt_at` moves there, so no other caller gets it meanwhile, and it comes back by itself if the
        caller is lost), and saved with a new version; the jobs as saved."""

    @abstractmethod
    async def record(self, job: JobExecutionLog) -> None:
        """Save the callback of a job claimed earlier, guarded by its version; raises domain.errors.ConcurrentUpdate
        when another writer saved the job first (its outcome is dropped: the delivery will be made again)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookMessage:
    webhook_id: str
    """The same on every attempt, so that a receiver can drop a repeat."""
    url: str
    body: bytes
    """The JSON payload, exactly as signed and sent."""
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    """How an attempt went: the receiver's HTTP status, or None with the reason when there was no answer (refused
    address, connection error, timeout)."""

    status: int | None
    error: str | None = None


class WebhookSender(Protocol):
    """Sends one signed webhook POST. Never raises for a failed delivery: the answer says how it went."""

    @abstractmethod
    async def send(self, message: WebhookMessage) -> WebhookAnswer: ...


JobEventBody = Callable[[JobExecutionLog], bytes]
"""The webhook payload of an ended job: `{"type", "timestamp", "data": <the job status body>}`, as JSON."""


class JobQueue(Protocol):
    """Hands job ids to workers.

    Idempotent: enqueueing an id that the queue already holds (waiting or running) adds nothing.
    Delivery is at least once: a worker must treat a job that is no longer Queued as done.
    Raises QueueUnavailable when the job could not be handed over.
    """

    @abstractmethod
    async def enqueue(self, job_id: UUID, *, attempt: int = 1, delay_seconds: float = 0) -> None:
        """Deliver `job_id` for attempt number `attempt` (a job with `attempts == n` waits for attempt n + 1)."""

    @abstractmethod
    async def abort(self, job_id: UUID, attempt: int) -> None:
        """Best effort: stop that attempt if a worker is running it now. Never raises for an unknown job;
        raises QueueUnavailable when the queue cannot be reached."""


class ArtifactSink(Protocol):
    """An artifact being written. Its bytes become visible only when the writing block exits cleanly."""

    @abstractmethod
    async def write(self, chunk: bytes) -> None: ...

    @property
    @abstractmethod
    def size(self) -> int: ...

    @property
    @abstractmethod
    def sha256(self) -> str: ...

    @property
    def content(self) -> bytes | None:
        """After the block: the bytes of an artifact that the store left to be saved with the job's row (as
        `ArtifactRef.content`, which the job ledger writes in the transaction of the job's outcome); None when the
        store published the artifact itself."""
        return None


@dataclass(frozen=True, slots=True)
class ArtifactLabel:
    """What a download of the artifact is labelled with, for stores that serve it themselves (a link)."""

    media_type: str
    filename: str


class ArtifactStore(Protocol):
    """Finished report files, addressed by key.

    `create(key)` writes to a temporary place and publishes the artifact atomically when the block
    exits without an exception (otherwise nothing is published). Readers never see a partial file.
    A store that keeps small artifacts in the job ledger's own database publishes them by the ledger instead: the
    sink's `content` then holds the bytes, saved with the job's outcome in one transaction (see ArtifactRef).
    Any method may raise ArtifactStoreUnavailable when the store cannot be reached.
    """

    @abstractmethod
    def create(self, key: str, label: ArtifactLabel | None = None) -> AbstractAsyncContextManager[ArtifactSink]: ...

    @abstractmethod
    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The artifact's bytes in chunks, `length` of them from `offset` (all that follow when None); raises
        ArtifactMissing (on first iteration) when it is gone."""

    @abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove an artifact; idempotent."""

    @abstractmethod
    async def sweep_temporary(self, older_than_seconds: float) -> int:
        """Remove unfinished writes left behind by a crashed process; returns how many."""

    @abstractmethod
    async def link(self, key: str, expires_in: timedelta) -> str | None:
        """A URL that downloads the artifact straight from the store for `expires_in` (a presigned URL), or None
        when the store cannot give one (a local directory)."""


Row = Sequence[object]


EncodedWrite = Callable[[bytes, int], Awaitable[None]]
"""Takes the next bytes of a report in its output format, and how many rows they hold (for the job's progress)."""


class RowStream(Protocol):
    """The result of a report query: column names, an optional row estimate (known at the latest once the first rows
    are read), and rows, read once: in batches, or in an encoder's bytes."""

    columns: Sequence[str]
    estimated_rows: int | None

    @abstractmethod
    def batches(self) -> AsyncIterator[Sequence[Row]]: ...

    async def encode(self, encoder: RowEncoder, write: EncodedWrite) -> None:
        """Hand every row to `write` as `encoder.encode` writes it (after `encoder.begin(columns)`), in chunks, each
        with the number of rows it holds. Here each batch through the encoder; a source whose database can write
        exactly those bytes itself (PostgreSQL's COPY, for a big CSV report) may have it do so instead, having
        decided before the query runs. Raises what `batches` raises."""
        async for batch in self.batches():
            await write(encoder.encode(batch), len(batch))


class ReportDataSource(Protocol):
    """Runs report queries read-only with a statement timeout, streaming rows rather than loading them whole.

    Raises ReportQueryFailed (bad SQL, a write attempt, a runtime error such as division by zero),
    ReportTimedOut, or StorageUnavailable (the reporting database cannot be reached: transient).
    """

    @abstractmethod
    def run(
        self, query: str, bindings: Sequence[Binding], timeout_seconds: float
    ) -> AbstractAsyncContextManager[RowStream]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderContext:
    """What an encoder may need besides the rows: a document's title and what it was run with, a report's output
    options."""

    title: str
    """The report's name."""
    parameters: Mapping[str, ParamValue]
    """The values the job ran with, every declared parameter included."""
    generated_at: datetime
    chart: Chart | None = None
    csv_formula_escape: bool = False

    @classmethod
    def of(cls, job: JobExecutionLog, now: datetime) -> RenderContext:
        return cls(
            title=job.report_name,
            parameters=job.parameters,
            generated_at=now,
            chart=job.chart,
            csv_formula_escape=job.csv_formula_escape,
        )


class RowEncoder(Protocol):
    """Turns rows into the bytes of one output format, one encoder per artifact: `begin`, `encode` for each batch,
    then the bytes of `end`; `close` always, last.

    A streamed format (CSV, JSON) returns its bytes as they come. A file format (XLSX, PDF, Parquet) may keep what
    it needs and return it from `end`, in chunks, after work it does off the event loop. `begin`, `encode` and `end`
    raise ReportOutputFailed when the rows cannot be written in the format."""

    @abstractmethod
    def begin(self, columns: Sequence[str]) -> bytes: ...

    @abstractmethod
    def encode(self, rows: Sequence[Row]) -> bytes: ...

    @abstractmethod
    def end(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None:
        """Release what the encoder holds (temporary files, a writer thread), whether or not `end` ran."""
        return None


RowEncoderFactory = Callable[[RenderContext], RowEncoder]
