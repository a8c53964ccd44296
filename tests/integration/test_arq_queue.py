import asyncio
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import pytest
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix
from arq.worker import Retry, Worker
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection as RedisConnection
from structlog.contextvars import get_contextvars

from application.errors import QueueUnavailable, StorageUnavailable
from application.run_report_job import Outcome, RunResult
from infrastructure.arq.jobs import (
    RECONCILE,
    RUN_REPORT_JOB,
    SWEEP,
    CronFields,
    cron_fields,
    drop_arq_report_job_lines,
    reconcile_jobs,
    run_report_job,
    sweep_artifacts,
    worker_options,
)
from infrastructure.arq.queue import ArqJobQueue, create_redis_pool
from infrastructure.arq.worker import LONG_JOB_SECONDS, PEER_FRESH_SECONDS, ReportWorker
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


class ClosedWhileWriting:
    """A stream writer whose connection was closed under it by another task, as redis-py meets it: writing raises
    AttributeError (the transport's internals are gone), not a ConnectionError. Closing it closes the real one."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes = 0

    def writelines(self, _data: object) -> None:
        self.writes += 1
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    def close(self) -> None:
        self.real.close()

    async def wait_closed(self) -> None:
        await self.real.wait_closed()


async def test_a_connection_closed_while_a_command_is_written_is_retried_on_a_new_one(
    queue: ArqJobQueue, redis: ArqRedis
) -> None:
    """Seen under load (`make bench`) as a 500: redis-py's AttributeError escaped the enqueue."""
    await redis.ping()
    connection = await redis.connection_pool.get_connection()
    writer = ClosedWhileWriting(connection._writer)  # the race, injected
    connection._writer = writer
    await redis.connection_pool.release(connection)
    job_id = uuid4()

    await queue.enqueue(job_id)

    assert writer.writes == 1
    assert await queued_ids(redis) == [f"{job_id}:1"]


async def test_a_connection_that_keeps_breaking_so_is_queue_unavailable_not_a_server_error(
    queue: ArqJobQueue, redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def closed_under_us(_connection: object, _command: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    monkeypatch.setattr(RedisConnection, "_send_packed_command", closed_under_us)

    with pytest.raises(QueueUnavailable, match="AttributeError"):
        await queue.enqueue(uuid4())


async def test_abort_of_an_unknown_attempt_is_a_no_op_that_writes_nothing(queue: ArqJobQueue, redis: ArqRedis) -> None:
    job_id = uuid4()
    await queue.enqueue(job_id, attempt=1)
    started = time.monotonic()

    await queue.abort(uuid4(), 1)
    await queue.abort(job_id, 2)  # an attempt that was never enqueued

    assert time.monotonic() - started < 0.5
    assert await redis.zcard(abort_jobs_ss) == 0  # no mark left to abort a later job with that id (arq #485)
    assert await queued_ids(redis) == [f"{job_id}:1"]


async def test_abort_with_redis_unreachable_raises_queue_unavailable() -> None:
    pool = create_redis_pool("redis://127.0.0.1:1/11", queue_name=QUEUE)
    started = time.monotonic()

    with pytest.raises(QueueUnavailable):
        await ArqJobQueue(pool, QUEUE).abort(uuid4(), 1)

    assert time.monotonic() - started < 2
    await pool.aclose()


# The job functions run by a real arq worker, in burst mode, with a stub in place of the use case.


class StubHandler:
    """Stands for RunReportJob.execute: records its runs, answers `outcome` or raises `error`, or, with
    `block`, runs until it is cancelled."""

    def __init__(
        self, outcome: Outcome = Outcome.SUCCEEDED, *, error: Exception | None = None, block: bool = False
    ) -> None:
        self.outcome = outcome
        self.error = error
        self.block = block
        self.runs: list[UUID] = []
        self.started = asyncio.Event()
        self.cancelled = False
        self.log_context: dict[str, object] = {}

    async def __call__(self, job_id: UUID) -> RunResult:
        self.runs.append(job_id)
        self.log_context = get_contextvars()
        self.started.set()
        if self.error is not None:
            raise self.error
        if self.block:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return RunResult(self.outcome, retry_in_seconds=2.5)


async def run_burst_worker(redis: ArqRedis, ctx: dict[str, Any], *, cron: bool = False) -> Worker:
    """Run a worker with our options until the queue is empty; without `cron`, the periodic jobs are left out."""
    options = worker_options(max_jobs=4, job_timeout_seconds=10, max_tries=5, queue_name=QUEUE)
    if not cron:
        del options["cron_jobs"]
    worker = Worker(**options, redis_pool=redis, burst=True, handle_signals=False, ctx=ctx)
    async with asyncio.timeout(10):
        await worker.main()
    return worker


async def arq_keys(redis: ArqRedis, arq_id: str) -> list[str]:
    """What arq still holds for a job id: its definition, its in-progress mark, an abort request."""
    held = [key for key in (job_key_prefix + arq_id, in_progress_key_prefix + arq_id) if await redis.exists(key)]
    if await redis.zscore(abort_jobs_ss, arq_id) is not None:
        held.append(abort_jobs_ss)
    return held


async def test_worker_delivers_the_job_id_to_the_handler(queue: ArqJobQueue, redis: ArqRedis) -> None:
    handler = StubHandler()
    job_id = uuid4()
    await queue.enqueue(job_id, attempt=2)

    worker = await run_burst_worker(redis, {RUN_REPORT_JOB: handler})

    assert handler.runs == [job_id]
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 0, 0)
    assert await queued_ids(redis) == []
    assert await arq_keys(redis, f"{job_id}:2") == []  # no result kept: the id is free again


async def test_arq_writes_no_start_and_end_lines_of_report_jobs(
    queue: ArqJobQueue, redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    drop_arq_report_job_lines()
    job_id = uuid4()
    await queue.enqueue(job_id)
    caplog.set_level("INFO", logger="arq.worker")
    worker = await run_burst_worker(redis, {RUN_REPORT_JOB: StubHandler()})

    arq_lines = [record.getMessage() for record in caplog.records if record.name == "arq.worker"]
    assert worker.jobs_complete == 1
    assert any(line.startswith("Starting worker") for line in arq_lines)  # arq still writes its other lines
    assert not [line for line in arq_lines if str(job_id) in line]  # the use case writes a job's start and end


async def test_abort_of_a_running_attempt_cancels_it_in_the_worker(queue: ArqJobQueue, redis: ArqRedis) -> None:
    handler = StubHandler(block=True)
    job_id = uuid4()
    await queue.enqueue(job_id, attempt=1)
    worker_task = asyncio.create_task(run_burst_worker(redis, {RUN_REPORT_JOB: handler}))
    async with asyncio.timeout(5):
        await handler.started.wait()

    started = time.monotonic()
    await queue.abort(job_id, 1)
    assert time.monotonic() - started < 0.5  # no wait for the worker
    worker = await worker_task

    assert handler.cancelled
    assert time.monotonic() - started < 2  # seen on the worker's next poll
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (0, 1, 0)  # arq counts it as failed
    assert await arq_keys(redis, f"{job_id}:1") == []
    assert await queued_ids(redis) == []


async def test_abort_of_a_deferred_attempt_drops_it_before_it_starts(queue: ArqJobQueue, redis: ArqRedis) -> None:
    handler = StubHandler()
    job_id = uuid4()
    await queue.enqueue(job_id, attempt=2, delay_seconds=60)

    await queue.abort(job_id, 2)
    worker = await run_burst_worker(redis, {RUN_REPORT_JOB: handler})  # does not wait the 60 s: moved up

    assert handler.runs == []
    assert worker.jobs_failed == 1
    assert await arq_keys(redis, f"{job_id}:2") == []


async def test_job_function_binds_the_job_id_to_the_log_context_while_it_runs() -> None:
    job_id = str(uuid4())
    handler = StubHandler(Outcome.SUCCEEDED)

    assert await run_report_job({RUN_REPORT_JOB: handler, "job_try": 1}, job_id) == "succeeded"

    assert handler.log_context == {"job_id": job_id}
    assert "job_id" not in get_contextvars()


async def test_a_retry_outcome_is_not_retried_by_arq(queue: ArqJobQueue, redis: ArqRedis) -> None:
    handler = StubHandler(Outcome.RETRY)  # the use case has already enqueued the next attempt
    assert await run_report_job({RUN_REPORT_JOB: handler, "job_try": 1}, str(uuid4())) == "retry"

    await queue.enqueue(uuid4())
    worker = await run_burst_worker(redis, {RUN_REPORT_JOB: handler})

    assert len(handler.runs) == 2
    assert (worker.jobs_complete, worker.jobs_retried) == (1, 0)
    assert await queued_ids(redis) == []


async def test_database_down_at_claim_becomes_a_retry_with_backoff() -> None:
    handler = StubHandler(error=StorageUnavailable("the database is down"))

    with pytest.raises(Retry) as raised:
        await run_report_job({RUN_REPORT_JOB: handler, "job_try": 3}, str(uuid4()))

    assert raised.value.defer_score == 4000


# Periodic work: arq cron jobs in every worker.


def test_worker_options_schedule_the_reconciler_and_the_sweep() -> None:
    options = worker_options(
        max_jobs=4, job_timeout_seconds=10, max_tries=5, queue_name=QUEUE, reconcile_every_seconds=10
    )

    reconcile, sweep = options["cron_jobs"]
    assert (reconcile.name, reconcile.minute, reconcile.second) == (
        "cron:reconcile_jobs",
        None,
        {0, 10, 20, 30, 40, 50},
    )
    assert (sweep.name, sweep.minute, sweep.second) == ("cron:sweep_artifacts", None, {0})
    assert (reconcile.run_at_startup, sweep.run_at_startup) == (True, False)
    assert reconcile.unique
    assert sweep.unique
    assert reconcile.timeout_s == sweep.timeout_s == 30
    assert (reconcile.max_tries, reconcile.keep_result_s) == (1, 0)
    assert options["allow_abort_jobs"] is True


@pytest.mark.parametrize("every", [1, 5, 15, 60, 120, 900, 3600, 21_600, 86_400])
def test_cron_fields_give_evenly_spaced_runs(every: int) -> None:
    [job] = worker_options(
        max_jobs=1, job_timeout_seconds=10, max_tries=1, queue_name=QUEUE, sweep_every_seconds=every
    )["cron_jobs"][1:]
    runs = []
    moment = datetime(2025, 3, 31, 23, 58, 57, tzinfo=UTC)
    for _ in range(4000 // every + 3):  # across an hour's end, a day's end and a month's end
        job.calculate_next(moment)
        assert job.next_run is not None
        runs.append(moment := job.next_run)

    assert {(later - earlier).total_seconds() for earlier, later in pairwise(runs)} == {every}
    assert {(run.hour * 3600 + run.minute * 60 + run.second) % every for run in runs} == {0}  # on the grid


@pytest.mark.parametrize(
    ("every", "fields"),
    [
        (20, CronFields(second={0, 20, 40})),
        (600, CronFields(minute={0, 10, 20, 30, 40, 50}, second=0)),
        (28_800, CronFields(hour={0, 8, 16}, minute=0, second=0)),
    ],
)
def test_cron_fields_per_period(every: int, fields: CronFields) -> None:
    assert cron_fields(every) == fields


@pytest.mark.parametrize("every", [0, -5, 7, 45, 90, 5000, 25_200, 172_800])
def test_cron_fields_refuse_a_period_that_cannot_be_even(every: int) -> None:
    with pytest.raises(ValueError, match=r"cannot be scheduled evenly|must be positive"):
        cron_fields(every)


async def test_cron_functions_run_the_ctx_callables_and_return_their_result() -> None:
    async def reconcile() -> int:
        return 4

    async def sweep() -> int:
        raise StorageUnavailable("the database is down")

    assert await reconcile_jobs({RECONCILE: reconcile}) == 4
    assert await sweep_artifacts({SWEEP: sweep}) is None  # logged; the next tick tries again


async def test_a_worker_runs_the_reconciler_at_startup(redis: ArqRedis) -> None:
    reconciled: list[float] = []

    async def reconcile() -> int:
        reconciled.append(time.monotonic())
        return 0

    async def sweep() -> int:
        return 0

    worker = await run_burst_worker(
        redis, {RUN_REPORT_JOB: StubHandler(), RECONCILE: reconcile, SWEEP: sweep}, cron=True
    )

    assert reconciled  # at once, without waiting for a tick
    assert worker.jobs_failed == 0


async def test_a_worker_skips_in_one_round_trip_the_jobs_other_workers_run_and_starts_the_rest(
    redis: ArqRedis, queue: ArqJobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [uuid4() for _ in range(8)]
    for job_id in ids:
        await queue.enqueue(job_id, attempt=1)
    taken_elsewhere = {f"{job_id}:1" for job_id in ids[:5]}
    for arq_id in taken_elsewhere:  # as another worker marks the jobs it runs
        await redis.psetex(in_progress_key_prefix + arq_id, 60_000, b"1")
    watched: list[str] = []
    watch = Pipeline.watch

    async def recording_watch(self: Pipeline, *names: Any) -> Any:
        watched.extend(str(name) for name in names)
        return await watch(self, *names)

    monkeypatch.setattr(Pipeline, "watch", recording_watch)
    handler = StubHandler(block=True)
    options = worker_options(max_jobs=4, job_timeout_seconds=10, max_tries=5, queue_name=QUEUE)
    del options["cron_jobs"]
    worker = ReportWorker(**options, redis_pool=redis, handle_signals=False, ctx={RUN_REPORT_JOB: handler})
    try:
        await worker.start_jobs(await redis.zrangebyscore(QUEUE, min=float("-inf"), max=float("inf")))
        async with asyncio.timeout(5):
            while len(handler.runs) < 3:  # noqa: ASYNC110 - three runs, one Event in the stub
                await asyncio.sleep(0.01)
    finally:
        for task in worker.tasks.values():
            task.cancel()
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    assert sorted(handler.runs) == sorted(ids[5:]), "the three free jobs start, none of the others'"
    assert sorted(watched) == sorted(in_progress_key_prefix + f"{job_id}:1" for job_id in ids[5:]), (
        "arq's own check ran for the free jobs only: no round trips on the jobs other workers run"
    )


def balancing_worker(redis: ArqRedis, handler: StubHandler) -> ReportWorker:
    options = worker_options(max_jobs=4, job_timeout_seconds=10, max_tries=5, queue_name=QUEUE)
    del options["cron_jobs"]
    return ReportWorker(**options, redis_pool=redis, handle_signals=False, ctx={RUN_REPORT_JOB: handler})


async def running_for(worker: ReportWorker, seconds: float) -> None:
    """Give the worker a running job that started `seconds` ago."""
    task = asyncio.create_task(asyncio.Event().wait())
    worker.tasks[f"{uuid4()}:1"] = task
    await worker.start_jobs([])  # records the start of the task it now runs
    for job_id in worker.tasks:
        worker._started[job_id] = time.monotonic() - seconds


async def test_a_worker_running_a_long_job_leaves_new_jobs_to_a_free_worker(redis: ArqRedis) -> None:
    busy, free = balancing_worker(redis, StubHandler()), balancing_worker(redis, StubHandler())
    await running_for(busy, LONG_JOB_SECONDS + 1)
    try:
        await free.balance(time.monotonic())
        await busy.balance(time.monotonic())
        assert (busy.allow_pick_jobs, busy.leaving_jobs_to_others) == (False, True)
        await free.balance(time.monotonic())
        assert free.allow_pick_jobs, "a worker without a long job keeps picking"

        await running_for(free, LONG_JOB_SECONDS + 1)  # now both run a long job: both pick, nobody else would
        await free.balance(time.monotonic())
        await busy.balance(time.monotonic())
        assert busy.allow_pick_jobs
        assert free.allow_pick_jobs
    finally:
        for worker in (busy, free):
            for task in worker.tasks.values():
                task.cancel()


async def test_a_short_job_or_a_silent_peer_never_stops_a_worker_picking(redis: ArqRedis) -> None:
    worker, peer = balancing_worker(redis, StubHandler()), balancing_worker(redis, StubHandler())
    await running_for(worker, LONG_JOB_SECONDS / 2)
    try:
        await peer.balance(time.monotonic())
        await worker.balance(time.monotonic())
        assert worker.allow_pick_jobs, "a job that has not run long yet keeps its worker picking"
        await running_for(worker, LONG_JOB_SECONDS + 1)
        stale = f"{time.time() - PEER_FRESH_SECONDS - 1:.3f} 0"
        await redis.hset(f"{QUEUE}:workers", peer.worker_id, stale)  # type: ignore[misc]  # the peer went quiet
        await worker.balance(time.monotonic())
        assert worker.allow_pick_jobs, "a peer that went quiet (killed, stuck) is not counted as free"
    finally:
        for task in worker.tasks.values():
            task.cancel()


async def test_balancing_never_resumes_picking_on_a_worker_that_is_stopping(redis: ArqRedis) -> None:
    worker = balancing_worker(redis, StubHandler())
    worker.handle_sig_wait_for_completion(signal.SIGTERM)
    await worker.balance(time.monotonic())
    assert not worker.allow_pick_jobs
    await asyncio.sleep(0)
    for task in worker.tasks.values():
        task.cancel()
