"""The Prometheus metrics of jobs, at the edges (Prometheus stays out of `application`).

Job metrics come from four edges the composition root wires in:
- `JobMetrics.record`: a subscriber of the committed job transitions (`application.job_events`): started,
  finished, handed back, in whichever process moved the job (worker, reconciler, an API cancel);
- `JobMetrics.instrument`: the worker hook around each delivery (outcome, run time, in progress);
- `JobMetrics.instrument_reconcile`: what each reconciler run did;
- `JobGauges.sample`: Queued/Running rows and the queue's length, sampled periodically.
"""

import asyncio
import dataclasses
import importlib.metadata
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import sqlalchemy as sa
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from application.deliver_webhooks import Deliveries
from application.ports import JobTransition
from application.reconcile_jobs import Reconciled
from application.run_report_job import JobHandler, RunResult
from domain.jobs import ErrorCode, JobExecutionLog, JobStatus
from infrastructure.logs import JOB_CLOCK_KEY
from infrastructure.persistence.statements import ACTIVE
from infrastructure.persistence.tables import jobs as jobs_table

log = logging.getLogger(__name__)


def register_build_info(registry: CollectorRegistry) -> None:
    """`reportgen_build_info{version="..."} 1`, the installed distribution's version (or `unknown`)."""
    try:
        version = importlib.metadata.version("reportgen")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    info = Gauge(
        "reportgen_build_info",
        "Always 1; the running reportgen version is in the version label.",
        ["version"],
        registry=registry,
        multiprocess_mode="max",
    )
    info.labels(version).set(1)


_ERROR_CODES = frozenset(code.value for code in ErrorCode)
_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800)
_BYTES = tuple(float(4**n * 1024) for n in range(12))  # 1 KiB to 4 GiB


def _error_label(job: JobExecutionLog) -> str:
    """A bounded label: the job's error code if it is one of ours, `none` without an error, `other` otherwise."""
    if job.error is None:
        return "none"
    return job.error.code if job.error.code in _ERROR_CODES else "other"


class Reconcile(Protocol):
    """ReconcileJobs.execute, or a wrapper of it."""

    def __call__(self, *, orphan_running: bool = False) -> Awaitable[Reconciled]: ...


class JobMetrics:
    """What happens to jobs, on `registry`: the process's own (in embedded mode the API's, so /metrics has all)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.started = counter("reportgen_jobs_started", "Job attempts started (a worker claimed the job).")
        self.finished = counter(
            "reportgen_jobs_finished",
            "Jobs that reached a final status, by status and error code.",
            ["status", "error_code"],
        )
        self.retries = counter(
            "reportgen_job_retries",
            "Running jobs handed back to the queue for another attempt, by reason.",
            ["error_code"],
        )
        self.reconciled = counter(
            "reportgen_reconciler_jobs",
            "Jobs the reconciler acted on: enqueued (Queued, enqueue asked again), requeued or failed (lost worker).",
            ["action"],
        )
        self.runs = counter("reportgen_job_runs", "Job deliveries handled by a worker, by outcome.", ["outcome"])
        self.duration = Histogram(
            "reportgen_job_run_duration_seconds",
            "Time a worker spent on one job delivery, by outcome.",
            ["outcome"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "reportgen_job_queue_wait_seconds",
            "Time from a job's creation to the start of its first attempt.",
            buckets=_SECONDS,
            registry=registry,
        )
        self.artifact_size = Histogram(
            "reportgen_job_artifact_size_bytes",
            "Size of the artifacts of Succeeded jobs.",
            buckets=_BYTES,
            registry=registry,
        )
        self.in_progress = Gauge(
            "reportgen_job_runs_in_progress",
            "Job deliveries this process is handling now.",
            registry=registry,
            multiprocess_mode="livesum",
        )

    async def record(self, transitions: Sequence[JobTransition]) -> None:
        """Count committed transitions (a `JobEvents` subscriber)."""
        for transition in transitions:
            job, new = transition.job, transition.change.new
            if new is JobStatus.RUNNING:
                self.started.inc()
                if job.attempts == 1 and job.started_at is not None:
                    self.queue_wait.observe(max(0.0, (job.started_at - job.created_at).total_seconds()))
            elif new is JobStatus.QUEUED:
                self.retries.labels(_error_label(job)).inc()
            else:
                self.finished.labels(new.value, _error_label(job)).inc()
                if job.artifact is not None:
                    self.artifact_size.observe(job.artifact.size)

    def instrument(self, run: JobHandler) -> JobHandler:
        """Wrap a job handler: each delivery is counted by outcome, timed, and its log lines can say how long."""

        async def instrumented(job_id: UUID) -> RunResult:
            started = time.monotonic()
            outcome = "error"
            self.in_progress.inc()
            try:
                with structlog.contextvars.bound_contextvars(**{JOB_CLOCK_KEY: started}):
                    result = await run(job_id)
                outcome = result.outcome.value
            except asyncio.CancelledError:  # the worker is stopping: the use case handed the job back
                outcome = "cancelled"
                raise
            finally:
                self.in_progress.dec()
                self.runs.labels(outcome).inc()
                self.duration.labels(outcome).observe(time.monotonic() - started)
            return result

        return instrumented

    def instrument_reconcile(self, reconcile: Reconcile) -> Reconcile:
        async def reconciled(*, orphan_running: bool = False) -> Reconciled:
            result = await reconcile(orphan_running=orphan_running)
            for action in ("enqueued", "requeued", "failed"):
                self.reconciled.labels(action).inc(getattr(result, action))
            return result

        return reconciled


JobCounts = Callable[[], Awaitable[Mapping[str, int]]]
QueueDepth = Callable[[], Awaitable[int]]


def count_unfinished_jobs(engine: AsyncEngine) -> JobCounts:
    """Queued and Running rows, counted in one query (served by the index on status)."""
    query = (
        sa.select(jobs_table.c.status, sa.func.count())
        .where(jobs_table.c.status.in_(ACTIVE))
        .group_by(jobs_table.c.status)
    )

    async def count() -> Mapping[str, int]:
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return dict.fromkeys(ACTIVE, 0) | {str(status): int(n) for status, n in rows}

    return count


@dataclass
class JobGauges:
    """Gauges of state that lives outside this process, sampled every few seconds by `sample` (never at scrape,
    which would put a database query and a Redis call on every scrape of every process). On a failed sample
    the gauges are removed rather than left stale; each worker reports the same global values."""

    registry: CollectorRegistry
    count_jobs: JobCounts
    queue_depth: QueueDepth
    queue_name: str
    timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        self._jobs = Gauge(
            "reportgen_jobs",
            "Unfinished jobs in the database, by status (sampled).",
            ["status"],
            registry=self.registry,
        )
        self._depth = Gauge(
            "reportgen_queue_depth",
            "Entries the job queue holds (sampled): waiting or deferred attempts, and periodic tasks.",
            ["queue"],
            registry=self.registry,
        )
        self._failing = False

    async def sample(self) -> None:
        """Refresh the gauges; never raises (a failure is logged once, until a sample succeeds again)."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                counts, depth = await asyncio.gather(self.count_jobs(), self.queue_depth())
        except Exception as exc:  # an outage of either must not stop the sampling, nor the worker
            self._jobs.clear()
            self._depth.clear()
            if not self._failing:
                log.warning("job gauges not sampled: %s: %s", type(exc).__name__, exc)
            self._failing = True
            return
        for status, n in counts.items():
            self._jobs.labels(status).set(n)
        self._depth.labels(self.queue_name).set(depth)
        if self._failing:
            log.info("job gauges sampled again")
        self._failing = False


DeliverWebhooksRun = Callable[[], Awaitable[Deliveries]]
"""DeliverWebhooks.execute, or a wrapper of it."""


class WebhookMetrics:
    """`reportgen_webhook_deliveries_total{outcome}`: webhook attempts by outcome (delivered, retried, failed, gone)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "reportgen_webhook_deliveries",
            "Webhook attempts, by outcome: delivered (2xx), retried (another attempt is scheduled), failed (it was "
            "the last), gone (the receiver answered 410).",
            ["outcome"],
            registry=registry,
        )
        for outcome in _WEBHOOK_OUTCOMES:
            self.deliveries.labels(outcome)

    def instrument(self, deliver: DeliverWebhooksRun) -> DeliverWebhooksRun:
        async def counted() -> Deliveries:
            result = await deliver()
            for outcome in _WEBHOOK_OUTCOMES:
                self.deliveries.labels(outcome).inc(getattr(result, outcome))
            return result

        return counted


_WEBHOOK_OUTCOMES = tuple(field.name for field in dataclasses.fields(Deliveries))
