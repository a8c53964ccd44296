"""Build every adapter and use case from Settings. Swapping an adapter is a change in this module only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from arq.connections import ArqRedis
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from api.services import UseCases
from api.webhooks import job_event_body
from application.cancel_job import CancelJob
from application.deliver_webhooks import DeliverWebhooks, RetrySchedule, made_due
from application.initiate_report_job import InitiateAsynchronousReportJob
from application.job_admission import UnitOfWorkAdmission
from application.job_events import PublishingJobLedger, Subscribers, publishing
from application.job_ledger import UnitOfWorkJobLedger
from application.job_limits import GetJobLimit, SetJobLimit
from application.job_queries import GetJobResult, GetJobStatus, ListJobs
from application.manage_reports import CreateReport, DeleteReport, GetReport, ListReports, UpdateReport
from application.ports import (
    ArtifactStore,
    JobAdmission,
    JobLedger,
    JobQueue,
    JobReader,
    JobTransition,
    UnitOfWork,
    WebhookSender,
)
from application.reconcile_jobs import ReconcileJobs
from application.run_report_job import JobHandler, RunPolicy, RunReportJob
from application.sweep_artifacts import SweepExpiredArtifacts
from bootstrap.formats import encoders_for
from domain.callbacks import CallbackPolicy, secret_key
from infrastructure.arq.jobs import PERIODIC_TIMEOUT_SECONDS
from infrastructure.arq.queue import ArqJobQueue, create_redis_pool
from infrastructure.artifacts import FileSystemArtifactStore
from infrastructure.formats import installed_encoders
from infrastructure.inprocess import InProcessJobQueue
from infrastructure.job_signals import LocalJobSignals, RedisJobSignals, job_events_channel
from infrastructure.metrics import (
    DeliverWebhooksRun,
    JobGauges,
    JobMetrics,
    Reconcile,
    WebhookMetrics,
    count_unfinished_jobs,
    register_build_info,
)
from infrastructure.object_store import ObjectStoreArtifactStore, s3_store
from infrastructure.persistence.admission import PostgresJobAdmission
from infrastructure.persistence.callbacks import SqlAlchemyCallbackOutbox
from infrastructure.persistence.data_source import SqlReportDataSource
from infrastructure.persistence.engine import ServiceTimeouts, create_engine
from infrastructure.persistence.inline_artifacts import InlineArtifactStore
from infrastructure.persistence.job_ledger import PostgresJobLedger
from infrastructure.persistence.job_reader import PostgresJobReader, SqlAlchemyJobReader
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from infrastructure.webhooks import ATTEMPT_SECONDS, HttpWebhookSender
from settings import Settings

WEBHOOK_INTERVAL_SECONDS = 1.0
"""How often each worker (and the embedded mode) looks for webhook deliveries due: one indexed query when none is."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    """Everything one process needs, built once per process from Settings (nothing at import time)."""

    settings: Settings
    engine: AsyncEngine
    reporting_engine: AsyncEngine
    queue: JobQueue
    redis: ArqRedis | None
    run_job: JobHandler
    """RunReportJob.execute, instrumented: what a queue calls with each delivered job id."""
    use_cases: UseCases
    """What the API serves."""
    run_reconcile: Reconcile
    """ReconcileJobs.execute, counted: what the periodic reconciler calls."""
    sweep: SweepExpiredArtifacts
    signals: LocalJobSignals
    """This process's requests waiting for jobs to finish (`?wait=`)."""
    remote_signals: RedisJobSignals | None
    """With Redis: how jobs finished in other processes reach `signals` (an API process runs its `listen`)."""
    deliver_webhooks: DeliverWebhooksRun
    """DeliverWebhooks.execute, counted: what the periodic delivery calls (every second, and when woken)."""
    webhooks_due: asyncio.Event
    """Set when this process committed the end of a job with a callback: the periodic delivery runs at once."""
    webhook_sender: WebhookSender
    registry: CollectorRegistry
    """Where this container's metrics are registered (the process's default registry unless overridden)."""

    def unit_of_work(self) -> UnitOfWork:
        return SqlAlchemyUnitOfWork(self.engine)

    def job_gauges(self) -> JobGauges:
        """Gauges of Queued/Running rows and of the queue's length, for a process that samples them periodically."""
        queue = self.settings.queue_name if self.redis is not None else "in-process"
        return JobGauges(self.registry, count_unfinished_jobs(self.engine), self._queue_depth, queue)

    async def _queue_depth(self) -> int:
        if self.redis is not None:
            return int(await self.redis.zcard(self.settings.queue_name))
        return self.queue.waiting if isinstance(self.queue, InProcessJobQueue) else 0

    async def readiness(self) -> Mapping[str, bool]:
        """Whether each dependency answers within two seconds."""
        checks = {"database": self._database_ok()}
        if self.redis is not None:
            checks["redis"] = _redis_ok(self.redis)
        results = await asyncio.gather(*checks.values())
        return dict(zip(checks, results, strict=True))

    async def _database_ok(self) -> bool:
        try:
            async with asyncio.timeout(2), self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:  # any failure means "not ready"
            return False
        return True

    async def aclose(self) -> None:
        if isinstance(self.queue, InProcessJobQueue):
            await self.queue.stop(grace_seconds=self.settings.shutdown_grace_seconds)
        if self.redis is not None:
            await self.redis.aclose()
        if isinstance(self.webhook_sender, HttpWebhookSender):
            await self.webhook_sender.aclose()
        await self.engine.dispose()
        if self.reporting_engine is not self.engine:  # a test may pass the one engine as both
            await self.reporting_engine.dispose()


async def _redis_ok(redis: ArqRedis) -> bool:
    try:
        async with asyncio.timeout(2):
            return bool(await redis.ping())
    except Exception:  # any failure means "not ready"
        return False


def build_container(settings: Settings, **overrides: Any) -> Container:
    """Wire the adapters for `settings`; `overrides` replace named adapters (engine, queue, artifacts, clock,
    registry)."""
    engine: AsyncEngine = overrides.get("engine") or _service_engine(settings)
    reporting: AsyncEngine = overrides.get("reporting_engine") or _reporting_engine(settings)
    clock = overrides.get("clock", utc_now)
    redis = None
    if settings.redis_url is not None:
        redis = overrides.get("redis") or create_redis_pool(settings.redis_url, queue_name=settings.queue_name)

    registry: CollectorRegistry = overrides.get("registry", REGISTRY)
    metrics = JobMetrics(registry)
    register_build_info(registry)

    def sql_uow() -> UnitOfWork:
        return SqlAlchemyUnitOfWork(engine)

    # Every committed job transition, in whichever use case: counted, and announced to the requests that wait.
    events = Subscribers(metrics.record)
    signals = LocalJobSignals()
    remote_signals = None
    if redis is not None:
        remote_signals = RedisJobSignals(redis, job_events_channel(settings.queue_name), signals)
        events.add(remote_signals.publish)
    else:
        events.add(signals.on_transitions)
    webhooks_due = asyncio.Event()

    async def wake_delivery(transitions: Sequence[JobTransition]) -> None:
        if made_due(transitions):
            webhooks_due.set()

    events.add(wake_delivery)
    uow = publishing(sql_uow, events)

    artifacts = overrides.get("artifacts") or artifact_store(settings, engine)
    queue: JobQueue = overrides.get("queue") or (
        InProcessJobQueue(concurrency=settings.worker_concurrency)
        if redis is None
        else ArqJobQueue(
            redis,
            settings.queue_name,
            delivery_lock_seconds=max(job_timeout_seconds(settings), PERIODIC_TIMEOUT_SECONDS) + 10,
            lost_after_seconds=settings.lease_seconds,
        )
    )
    # The one choice between the paths: on PostgreSQL the hot paths run the unit of work's statements on the driver
    # connection, some composed into one round trip; elsewhere they run as units of work.
    admission: JobAdmission = UnitOfWorkAdmission(uow)
    ledger: JobLedger = UnitOfWorkJobLedger(uow)  # announced by its units of work
    reader: JobReader = SqlAlchemyJobReader(engine)
    if engine.dialect.name == "postgresql":
        admission = PostgresJobAdmission(engine, transactional=admission)
        ledger = PublishingJobLedger(PostgresJobLedger(engine), events)
        reader = PostgresJobReader(engine)
    source = SqlReportDataSource(reporting, copy_csv=True)  # PostgreSQL only: SQLite keeps the row path
    encoders = encoders_for(encoders=installed_encoders(pdf_max_rows=settings.pdf_max_rows))
    run = RunReportJob(ledger, source, artifacts, encoders, queue, clock, _policy(settings))
    callbacks = CallbackPolicy.of(settings.webhook_allowed_hosts, enabled=bool(settings.webhook_secret))
    sender: WebhookSender = overrides.get("webhook_sender") or HttpWebhookSender(
        [secret_key(secret) for secret in settings.webhook_secret], callbacks
    )
    schedule = RetrySchedule(settings.webhook_retry_seconds)
    # A claimed delivery is held past the longest attempt: a worker lost mid-attempt delays it by that much only.
    hold = ATTEMPT_SECONDS + 10
    deliver = DeliverWebhooks(
        SqlAlchemyCallbackOutbox(engine), sender, job_event_body, clock, schedule=schedule, hold_seconds=hold
    )
    return Container(
        settings=settings,
        engine=engine,
        reporting_engine=reporting,
        queue=queue,
        redis=redis,
        run_job=metrics.instrument(run.execute),
        use_cases=UseCases(
            initiate=InitiateAsynchronousReportJob(
                uow,
                admission,
                queue,
                clock,
                default_limit=settings.max_active_jobs_per_user,
                installed_formats=frozenset(encoders),
                callback_policy=callbacks,
            ),
            get_status=GetJobStatus(reader, signals),
            list_jobs=ListJobs(reader),
            get_result=GetJobResult(reader, artifacts, clock),
            cancel=CancelJob(uow, queue, clock),
            create_report=CreateReport(uow, clock),
            update_report=UpdateReport(uow, clock),
            delete_report=DeleteReport(uow),
            get_report=GetReport(uow),
            list_reports=ListReports(uow),
            get_job_limit=GetJobLimit(uow, default_limit=settings.max_active_jobs_per_user),
            set_job_limit=SetJobLimit(uow, default_limit=settings.max_active_jobs_per_user),
        ),
        run_reconcile=metrics.instrument_reconcile(
            ReconcileJobs(uow, queue, clock, max_attempts=settings.max_attempts).execute
        ),
        sweep=SweepExpiredArtifacts(uow, artifacts, clock),
        signals=signals,
        remote_signals=remote_signals,
        deliver_webhooks=WebhookMetrics(registry).instrument(deliver.execute),
        webhooks_due=webhooks_due,
        webhook_sender=sender,
        registry=registry,
    )


def _service_engine(settings: Settings) -> AsyncEngine:
    """The engine of the API, the job ledger, the reconciler and the gauges, never of reports: every statement has
    a lock and a statement timeout, and a request waits a bounded time for a connection (all 503 past it).

    Each running job writes its heartbeat and its transitions here, besides the requests: the pool holds at least
    the worker's concurrency plus a few. No overflow: see Settings."""
    pool_size = max(settings.database_pool_size, settings.worker_concurrency + 5)
    timeouts = ServiceTimeouts(settings.database_lock_timeout_seconds, settings.database_statement_timeout_seconds)
    return create_engine(
        settings.effective_database_url,
        timeouts=timeouts,
        application_name="reportgen",
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=settings.database_pool_timeout_seconds,
    )


def _reporting_engine(settings: Settings) -> AsyncEngine:
    """The engine that report queries run on, always a pool of its own, even on the service's database: nothing a
    report holds (a lock, a session's state) can reach a connection of the service. One connection per job a worker
    runs at once; it opens none until a report runs (an API process never does). A report's own time limit bounds
    its statements."""
    url = settings.reporting_database_url or settings.effective_database_url
    return create_engine(
        url, application_name="reportgen-reports", pool_size=settings.worker_concurrency, max_overflow=0
    )


def job_timeout_seconds(settings: Settings) -> float:
    """arq's timeout of one job: past the report's statement timeout, so that the query's own timeout fires first."""
    return settings.report_timeout_seconds + 60


def _policy(settings: Settings) -> RunPolicy:
    return RunPolicy(
        timeout_seconds=settings.report_timeout_seconds,
        max_attempts=settings.max_attempts,
        lease_seconds=settings.lease_seconds,
        heartbeat_seconds=min(1.0, settings.lease_seconds / 3),
        result_ttl_seconds=settings.result_ttl_seconds,
    )


@asynccontextmanager
async def open_container(settings: Settings, **overrides: Any) -> AsyncIterator[Container]:
    container = build_container(settings, **overrides)
    try:
        yield container
    finally:
        await container.aclose()


def artifact_store(settings: Settings, engine: AsyncEngine | None = None) -> ArtifactStore:
    """Object storage when `artifact_url` names a bucket, else the local directory; in front of either, on
    PostgreSQL (`engine`), the service database for artifacts up to `inline_artifact_max_bytes`."""
    store: ArtifactStore
    if settings.artifact_url is not None:
        store = ObjectStoreArtifactStore(s3_store(settings.artifact_url, dict(settings.aws_env)))
    else:
        store = FileSystemArtifactStore(settings.artifact_dir)
    if engine is not None and engine.dialect.name == "postgresql" and settings.inline_artifact_max_bytes > 0:
        return InlineArtifactStore(engine, store, max_bytes=settings.inline_artifact_max_bytes)
    return store
