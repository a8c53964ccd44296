import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import pytest
from arq.connections import ArqRedis
from arq.worker import Retry, Worker
from redis.asyncio import Redis
from structlog.contextvars import get_contextvars

from application.errors import QueueUnavailable, StorageUnavailable
from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from application.run_report_job import Outcome, RunPolicy, RunReportJob, RunResult
from domain.jobs import ErrorCode, JobStatus
from domain.reports import ReportConfiguration
from infrastructure.arq.jobs import RUN_REPORT_JOB, run_report_job, worker_options
from infrastructure.arq.queue import ArqJobQueue, create_redis_pool
from infrastructure.encoders import ENCODERS
from tests.fakes import FakeArtifactStore, FakeClock, FakeDatabase, FakeReportDataSource, FakeUnitOfWork
from tests.services import REDIS_URL, require

pytestmark = pytest.mark.integration

QUEUE = "reportgen:test"
REDIS_DB = 11


def redis_url(db: int) -> str:
    parts = urlsplit(REDIS_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


@pytest.fixture
async def redis() -> AsyncIterator[ArqRedis]:
    require("Redis", REDIS_URL)
    pool = create_redis_pool(redis_url(REDIS_DB), queue_name=QUEUE)
    await pool.flushdb()
    yield pool
    await pool.flushdb()
    await pool.aclose()


@pytest.fixture
def queue(redis: ArqRedis) -> ArqJobQueue:
    return ArqJobQueue(redis, QUEUE)


async def queued_ids(redis: ArqRedis) -> list[str]:
    return sorted(job.job_id or "" for job in await redis.queued_jobs(queue_name=QUEUE))


async def test_double_enqueue_of_one_attempt_yields_one_job(queue: ArqJobQueue, redis: ArqRedis) -> None:
    job_id = uuid4()

    await queue.enqueue(job_id)
    await queue.enqueue(job_id)

    assert await queued_ids(redis) == [f"{job_id}:1"]
    [job] = await redis.queued_jobs(queue_name=QUEUE)
    assert (job.function, job.args) == ("run_report_job", (str(job_id),))


async def test_another_attempt_of_the_same_job_is_a_job_of_its_own(queue: ArqJobQueue, redis: ArqRedis) -> None:
    job_id = uuid4()

    await queue.enqueue(job_id, attempt=1)
    await queue.enqueue(job_id, attempt=2)
    await queue.enqueue(job_id, attempt=2)

    assert await queued_ids(redis) == [f"{job_id}:1", f"{job_id}:2"]


async def test_delayed_enqueue_is_scheduled_in_the_future(queue: ArqJobQueue, redis: ArqRedis) -> None:
    job_id = uuid4()
    before_ms = time.time() * 1000

    await queue.enqueue(job_id, delay_seconds=30)

    after_ms = time.time() * 1000
    score = await redis.zscore(QUEUE, f"{job_id}:1")
    assert score is not None
    assert before_ms + 30_000 - 1 <= score <= after_ms + 30_000 + 1  # arq rounds to milliseconds


async def test_enqueue_to_an_unreachable_redis_fails_fast_with_queue_unavailable() -> None:
    pool = create_redis_pool("redis://127.0.0.1:1/11", queue_name=QUEUE)
    started = time.monotonic()

    with pytest.raises(QueueUnavailable):
        await ArqJobQueue(pool, QUEUE).enqueue(uuid4())

    assert time.monotonic() - started < 2
    await pool.aclose()


async def test_enqueue_to_a_redis_that_never_answers_fails_within_seconds() -> None:
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept and read, never answer, until the client hangs up
        writer.close()
        hung_up.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = create_redis_pool(f"redis://127.0.0.1:{port}/11", queue_name=QUEUE)
    started = time.monotonic()
    try:
        with pytest.raises(QueueUnavailable):
            await ArqJobQueue(pool, QUEUE).enqueue(uuid4())
        assert time.monotonic() - started < 1.8  # the socket timeout, not the enqueue's overall deadline
    finally:
        await pool.aclose()
        async with asyncio.timeout(2):
            await hung_up.wait()
        server.close()
        await server.wait_closed()


async def test_a_connection_dropped_by_redis_does_not_fail_the_next_enqueue(
    queue: ArqJobQueue, redis: ArqRedis
) -> None:
    await queue.enqueue(uuid4())
    connection_id = await redis.client_id()
    admin = Redis.from_url(redis_url(REDIS_DB))
    try:
        assert await admin.client_kill_filter(_id=connection_id) == 1  # as a Redis restart would
    finally:
        await admin.aclose()

    await queue.enqueue(uuid4())

    assert len(await queued_ids(redis)) == 2


# The job function run by a real arq worker, in burst mode, with the use case built on fakes.


@pytest.fixture
def db(report: ReportConfiguration) -> FakeDatabase:
    db = FakeDatabase()
    db.reports[report.id] = report
    return db


@pytest.fixture
def report() -> ReportConfiguration:
    return ReportConfiguration(id=uuid4(), name="Sales", query="SELECT 1 AS n", formats=("csv", "json"))


@pytest.fixture
def source() -> FakeReportDataSource:
    return FakeReportDataSource(columns=("region", "n"), rows=[("EU", 1), ("US", 2)])


@pytest.fixture
def store() -> FakeArtifactStore:
    return FakeArtifactStore()


@pytest.fixture
def use_case(db: FakeDatabase, source: FakeReportDataSource, store: FakeArtifactStore) -> RunReportJob:
    policy = RunPolicy(max_attempts=2, retry_base_delay_seconds=0.01, retry_max_delay_seconds=0.02)
    return RunReportJob(lambda: FakeUnitOfWork(db), source, store, ENCODERS, FakeClock(), policy)


async def initiate(db: FakeDatabase, queue: ArqJobQueue, report: ReportConfiguration) -> UUID:
    initiate = InitiateAsynchronousReportJob(lambda: FakeUnitOfWork(db), queue, FakeClock())
    return (await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice"))).job_id


async def run_burst_worker(redis: ArqRedis, use_case: RunReportJob) -> Worker:
    options = worker_options(max_jobs=4, job_timeout_seconds=10, max_tries=5, queue_name=QUEUE)
    worker = Worker(
        **options, redis_pool=redis, burst=True, handle_signals=False, ctx={RUN_REPORT_JOB: use_case.execute}
    )
    async with asyncio.timeout(10):
        await worker.main()
    return worker


async def test_worker_runs_the_job_to_succeeded_with_its_artifact(
    redis: ArqRedis,
    queue: ArqJobQueue,
    db: FakeDatabase,
    report: ReportConfiguration,
    store: FakeArtifactStore,
    use_case: RunReportJob,
) -> None:
    job_id = await initiate(db, queue, report)

    worker = await run_burst_worker(redis, use_case)

    job = db.jobs[job_id]
    assert job.status is JobStatus.SUCCEEDED
    assert job.artifact is not None
    assert store.files[job.artifact.key] == b"region,n\r\nEU,1\r\nUS,2\r\n"
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 0, 0)
    assert await queued_ids(redis) == []


async def test_transient_failure_is_retried_by_arq_until_retries_are_exhausted(
    redis: ArqRedis,
    queue: ArqJobQueue,
    db: FakeDatabase,
    report: ReportConfiguration,
    source: FakeReportDataSource,
    store: FakeArtifactStore,
    use_case: RunReportJob,
) -> None:
    source.error = StorageUnavailable("the reporting database is down")
    job_id = await initiate(db, queue, report)

    worker = await run_burst_worker(redis, use_case)

    job = db.jobs[job_id]
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == ErrorCode.RETRIES_EXHAUSTED
    assert job.attempts == 2
    assert len(source.calls) == 2
    assert (worker.jobs_retried, worker.jobs_complete) == (1, 1)
    assert store.files == {}


class RecordingUseCase:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.log_context: dict[str, object] = {}

    async def execute(self, job_id: UUID) -> RunResult:
        self.log_context = get_contextvars()
        return RunResult(self.outcome, retry_in_seconds=2.5)


async def test_job_function_binds_the_job_id_to_the_log_context_while_it_runs() -> None:
    job_id = str(uuid4())
    use_case = RecordingUseCase(Outcome.SUCCEEDED)

    assert await run_report_job({RUN_REPORT_JOB: use_case.execute, "job_try": 1}, job_id) == "succeeded"

    assert use_case.log_context == {"job_id": job_id}
    assert "job_id" not in get_contextvars()


async def test_job_function_turns_a_retry_outcome_into_an_arq_retry_with_its_delay() -> None:
    with pytest.raises(Retry) as raised:
        await run_report_job({RUN_REPORT_JOB: RecordingUseCase(Outcome.RETRY).execute, "job_try": 1}, str(uuid4()))

    assert raised.value.defer_score == 2500


async def test_database_down_at_claim_becomes_a_retry_with_backoff(db: FakeDatabase, use_case: RunReportJob) -> None:
    db.unavailable = True

    with pytest.raises(Retry) as raised:
        await run_report_job({RUN_REPORT_JOB: use_case.execute, "job_try": 3}, str(uuid4()))

    assert raised.value.defer_score == 4000
