"""Logs (JSON, context, redaction, job duration) and job metrics, driven through the real use cases on fakes."""

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from uuid import UUID, uuid4

import pytest
import structlog
from prometheus_client import CollectorRegistry

from application.cancel_job import CancelJob
from application.errors import ReportQueryFailed, StorageUnavailable
from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from application.job_admission import UnitOfWorkAdmission
from application.job_events import PublishingJobLedger, Subscribers, publishing
from application.job_ledger import UnitOfWorkJobLedger
from application.job_queries import JobQuery
from application.reconcile_jobs import Reconciled, ReconcileJobs
from application.run_report_job import Outcome, RunPolicy, RunReportJob, RunResult
from domain.jobs import JobExecutionLog, JobStatus
from domain.reports import ParameterType, ReportConfiguration, ReportParameter
from infrastructure.logs import REDACTED, Redactor, configure_logging
from infrastructure.metrics import JobGauges, JobMetrics, count_unfinished_jobs, register_build_info
from infrastructure.persistence.engine import create_engine
from infrastructure.persistence.tables import metadata
from infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from tests.fakes import (
    FakeArtifactStore,
    FakeClock,
    FakeDatabase,
    FakeJobQueue,
    FakeReportDataSource,
    FakeUnitOfWork,
    LinesEncoder,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
SECRET = "the-jwt-secret-of-this-service-0123456789"


@pytest.fixture
def logs() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Configure JSON logging for the test (restored after it); calling the fixture returns the lines so far."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(fmt="json", level="INFO", secrets=[SECRET, None])
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)  # what configure_logging writes to sys.stdout

    def lines() -> list[dict[str, object]]:
        handler.flush()  # lines logged on an event loop wait a moment before they are written
        return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]

    try:
        yield lines
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def test_json_logs_carry_bound_context_and_stdlib_extras(logs: Callable[[], list[dict[str, object]]]) -> None:
    with structlog.contextvars.bound_contextvars(request_id="req-1"):
        logging.getLogger("reportgen.test").info("job started", extra={"job_id": "j-1"})

    line = logs()[-1]
    assert (line["event"], line["request_id"], line["job_id"], line["level"]) == ("job started", "req-1", "j-1", "info")


def test_secrets_never_reach_a_log_line(logs: Callable[[], list[dict[str, object]]]) -> None:
    stdlib = logging.getLogger("reportgen.test")
    structlog.get_logger("reportgen.test").info(
        "calling out",
        authorization=f"Bearer {JWT}",
        headers={"Cookie": "session=abc", "Accept": "text/csv"},
        url="https://api.test/x?access_token=opaque-value&page=2",
        dsn="postgresql+asyncpg://reportgen:db-password@db:5432/reportgen",
        note=f"key is {SECRET}",
        items=[JWT],
    )
    stdlib.warning("header was Bearer %s", "opaque-bearer-value", extra={"api_key": "k-123", "client_secret": "s"})
    try:
        raise ValueError(f"bad token {JWT} with {SECRET}")
    except ValueError:
        stdlib.exception("it failed")

    lines = logs()
    text = json.dumps(lines)
    for leaked in (JWT, SECRET, "opaque-value", "db-password", "session=abc", "opaque-bearer-value", "k-123"):
        assert leaked not in text
    first = lines[0]
    assert first["authorization"] == REDACTED
    assert first["headers"] == {"Cookie": REDACTED, "Accept": "text/csv"}
    assert first["url"] == f"https://api.test/x?access_token={REDACTED}&page=2"
    assert first["dsn"] == f"postgresql+asyncpg://reportgen:{REDACTED}@db:5432/reportgen"
    assert lines[2]["exception"]  # the traceback is kept, scrubbed


def test_redactor_leaves_ordinary_values_alone() -> None:
    event = {"event": "http_request", "route": "/api/v1/jobs/{jobId}", "status": 200, "duration_ms": 1.5}

    assert Redactor([SECRET])(None, "info", dict(event)) == event


async def test_a_jobs_final_line_says_how_long_its_delivery_took(
    logs: Callable[[], list[dict[str, object]]],
) -> None:
    job_log = logging.getLogger("application.run_report_job")

    async def run(job_id: UUID) -> RunResult:
        job_log.info("job started", extra={"job_id": str(job_id)})
        job_log.info("job %s", "succeeded", extra={"job_id": str(job_id), "outcome": "succeeded"})
        return RunResult(Outcome.SUCCEEDED, attempt=1)

    await JobMetrics(CollectorRegistry()).instrument(run)(uuid4())

    started, finished = logs()
    assert "duration_ms" not in started
    assert isinstance(finished["duration_ms"], float)
    assert finished["duration_ms"] >= 0
    assert not any(key.startswith("_") for key in {*started, *finished})


async def test_job_metrics_count_each_delivery_by_outcome_and_time_it() -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)

    async def succeed(job_id: UUID) -> RunResult:
        assert registry.get_sample_value("reportgen_job_runs_in_progress") == 1
        return RunResult(Outcome.SUCCEEDED)

    async def crash(job_id: UUID) -> RunResult:
        raise RuntimeError("boom")

    async def stopped(job_id: UUID) -> RunResult:
        raise asyncio.CancelledError

    await metrics.instrument(succeed)(uuid4())
    await metrics.instrument(succeed)(uuid4())
    with pytest.raises(RuntimeError):
        await metrics.instrument(crash)(uuid4())
    with pytest.raises(asyncio.CancelledError):
        await metrics.instrument(stopped)(uuid4())

    assert registry.get_sample_value("reportgen_job_runs_total", {"outcome": "succeeded"}) == 2
    assert registry.get_sample_value("reportgen_job_runs_total", {"outcome": "error"}) == 1
    assert registry.get_sample_value("reportgen_job_runs_total", {"outcome": "cancelled"}) == 1
    assert registry.get_sample_value("reportgen_job_run_duration_seconds_count", {"outcome": "succeeded"}) == 2
    assert registry.get_sample_value("reportgen_job_run_duration_seconds_count", {"outcome": "error"}) == 1
    assert registry.get_sample_value("reportgen_job_runs_in_progress") == 0


class World:
    """The use cases on fakes, their committed transitions counted by JobMetrics on a registry of the test's own."""

    def __init__(self, *, ledger: bool = False) -> None:
        """`ledger`: the worker saves through a publishing job ledger (as on PostgreSQL), not its units of work."""
        self.db = FakeDatabase()
        self.clock = FakeClock()
        self.queue = FakeJobQueue(self.db)
        self.source = FakeReportDataSource()
        self.registry = CollectorRegistry()
        self.metrics = JobMetrics(self.registry)
        events = Subscribers(self.metrics.record)
        self.uow = publishing(lambda: FakeUnitOfWork(self.db), events)
        policy = RunPolicy(max_attempts=2, lease_seconds=15, heartbeat_seconds=0.01, retry_base_delay_seconds=0)
        observed = PublishingJobLedger(UnitOfWorkJobLedger(lambda: FakeUnitOfWork(self.db)), events)
        self.run = RunReportJob(
            observed if ledger else UnitOfWorkJobLedger(self.uow),
            self.source,
            FakeArtifactStore(),
            {"csv": LinesEncoder},
            self.queue,
            self.clock,
            policy,
        )
        self.report = ReportConfiguration(
            id=uuid4(),
            name="Sales",
            query="SELECT :region AS region",
            parameters=(ReportParameter("region", ParameterType.STRING, default="EU"),),
            formats=("csv",),
        )
        self.db.reports[self.report.id] = self.report

    async def submit(self) -> UUID:
        initiate = InitiateAsynchronousReportJob(self.uow, UnitOfWorkAdmission(self.uow), self.queue, self.clock)
        return (await initiate.execute(InitiateReportJob(report_id=self.report.id, user_id="alice"))).job_id

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, dict(labels or {})) or 0.0


@pytest.mark.parametrize("ledger", [False, True], ids=["unit-of-work", "job-ledger"])
async def test_a_succeeded_job_is_counted_started_and_finished_with_its_wait_and_size(ledger: bool) -> None:
    world = World(ledger=ledger)
    job_id = await world.submit()
    world.clock.advance(3)

    await world.run.execute(job_id)

    assert world.value("reportgen_jobs_started_total") == 1
    assert world.value("reportgen_jobs_finished_total", {"status": "Succeeded", "error_code": "none"}) == 1
    assert world.value("reportgen_job_queue_wait_seconds_sum") == 3
    assert world.value("reportgen_job_queue_wait_seconds_bucket", {"le": "2.5"}) == 0
    assert world.value("reportgen_job_artifact_size_bytes_sum") == len(b"n\n1\n2\n3\n# Sales\n")


@pytest.mark.parametrize("ledger", [False, True], ids=["unit-of-work", "job-ledger"])
async def test_failures_are_counted_by_error_code_and_hand_backs_as_retries(ledger: bool) -> None:
    world = World(ledger=ledger)
    world.source.error = ReportQueryFailed("syntax error")
    await world.run.execute(await world.submit())
    world.source.error = StorageUnavailable("down")
    transient = await world.submit()

    await world.run.execute(transient)  # attempt 1: handed back
    await world.run.execute(transient)  # attempt 2 of 2: failed

    assert world.value("reportgen_jobs_finished_total", {"status": "Failed", "error_code": "REPORT_QUERY_FAILED"}) == 1
    assert world.value("reportgen_job_retries_total", {"error_code": "REPORT_QUERY_FAILED"}) == 1
    assert world.value("reportgen_jobs_finished_total", {"status": "Failed", "error_code": "RETRIES_EXHAUSTED"}) == 1
    assert world.value("reportgen_jobs_started_total") == 3
    assert world.value("reportgen_job_queue_wait_seconds_count") == 2  # first attempts only


async def test_a_cancel_is_counted_and_a_transition_whose_commit_fails_is_not() -> None:
    world = World()
    cancel = CancelJob(world.uow, world.queue, world.clock)
    job_id = await world.submit()
    world.db.fail_commit = True
    with pytest.raises(StorageUnavailable):
        await cancel.execute(JobQuery(job_id=job_id, user_id="alice", is_admin=False))
    assert world.value("reportgen_jobs_finished_total", {"status": "Cancelled", "error_code": "none"}) == 0

    world.db.fail_commit = False
    await cancel.execute(JobQuery(job_id=job_id, user_id="alice", is_admin=False))

    assert world.value("reportgen_jobs_finished_total", {"status": "Cancelled", "error_code": "none"}) == 1


async def test_reconciler_runs_are_counted_by_action() -> None:
    world = World()
    job_id = await world.submit()
    world.db.jobs[job_id].start(world.clock(), world.clock())  # a worker took it, then vanished
    await world.submit()
    world.clock.advance(60)
    reconcile = world.metrics.instrument_reconcile(
        ReconcileJobs(world.uow, world.queue, world.clock, max_attempts=2).execute
    )

    assert await reconcile() == Reconciled(enqueued=2, requeued=1, failed=0)
    assert world.value("reportgen_reconciler_jobs_total", {"action": "enqueued"}) == 2
    assert world.value("reportgen_reconciler_jobs_total", {"action": "requeued"}) == 1
    assert world.value("reportgen_reconciler_jobs_total", {"action": "failed"}) == 0
    assert world.value("reportgen_job_retries_total", {"error_code": "WORKER_LOST"}) == 1


async def test_job_gauges_are_sampled_and_removed_while_a_dependency_is_down(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    counts = {"Queued": 4, "Running": 1}
    down = False

    async def count_jobs() -> Mapping[str, int]:
        if down:
            raise ConnectionError("database down")
        return counts

    async def depth() -> int:
        return 7

    gauges = JobGauges(registry, count_jobs, depth, "reportgen:queue")
    await gauges.sample()
    assert registry.get_sample_value("reportgen_jobs", {"status": "Queued"}) == 4
    assert registry.get_sample_value("reportgen_jobs", {"status": "Running"}) == 1
    assert registry.get_sample_value("reportgen_queue_depth", {"queue": "reportgen:queue"}) == 7

    down = True
    await gauges.sample()
    await gauges.sample()
    assert registry.get_sample_value("reportgen_jobs", {"status": "Queued"}) is None
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # once per outage, not once per sample

    down = False
    await gauges.sample()
    assert registry.get_sample_value("reportgen_queue_depth", {"queue": "reportgen:queue"}) == 7


async def test_unfinished_jobs_are_counted_by_status_in_the_database() -> None:
    world = World()
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        async with SqlAlchemyUnitOfWork(engine) as uow:
            await uow.reports.add(world.report)
            for status in (JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED):
                job = JobExecutionLog.queue(
                    job_id=uuid4(), report=world.report, request=world.report.resolve({}, "csv"),
                    owner_id="alice", now=world.clock(),
                )  # fmt: skip
                job.status = status
                await uow.jobs.add(job)
            await uow.commit()

        assert await count_unfinished_jobs(engine)() == {"Queued": 2, "Running": 1}
    finally:
        await engine.dispose()


def test_build_info_names_the_installed_version() -> None:
    registry = CollectorRegistry()

    register_build_info(registry)

    (sample,) = next(iter(registry.collect())).samples
    assert sample.name == "reportgen_build_info"
    assert sample.value == 1
    assert re.fullmatch(r"\d+\.\d+\.\d+.*|unknown", sample.labels["version"])
