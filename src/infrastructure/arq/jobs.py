"""The arq job functions and the worker settings that go with them; the composition root adds the lifecycle hooks."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple
from uuid import UUID

from arq.connections import RedisSettings
from arq.cron import CronJob, cron
from arq.typing import WorkerCoroutine
from arq.worker import Retry
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from structlog.contextvars import bound_contextvars

from application.errors import StorageUnavailable
from application.run_report_job import JobHandler
from infrastructure.periodic import PeriodicWork, run_once

RUN_REPORT_JOB = "run_report_job"
"""The ctx key under which on_startup must put the job handler (RunReportJob.execute, perhaps instrumented)."""
RECONCILE = "reconcile"
"""The ctx key for the reconciler: a zero-argument coroutine function (re-enqueues jobs the queue lost)."""
SWEEP = "sweep"
"""The ctx key for the retention sweep: a zero-argument coroutine function."""

STORAGE_RETRY_BASE_SECONDS = 1.0
STORAGE_RETRY_MAX_SECONDS = 60.0
PERIODIC_TIMEOUT_SECONDS = 30.0
"""arq cancels a reconcile or sweep run after this long; the next tick starts afresh (both are idempotent)."""


def storage_retry_delay(job_try: int) -> float:
    """Backoff while the database is down at claim time: 1 s, 2 s, 4 s, ... up to a minute."""
    return min(STORAGE_RETRY_MAX_SECONDS, STORAGE_RETRY_BASE_SECONDS * 2.0 ** max(0, job_try - 1))


async def run_report_job(ctx: dict[str, Any], job_id: str) -> str:
    """Run one job. Every outcome is already in the job row, and a RETRY outcome has already enqueued the next
    attempt (the use case does it), so arq only retries this delivery when the database was down at claim time.
    """
    handler: JobHandler = ctx[RUN_REPORT_JOB]
    with bound_contextvars(job_id=job_id):
        try:
            result = await handler(UUID(job_id))
        except StorageUnavailable:
            raise Retry(defer=storage_retry_delay(ctx.get("job_try", 1))) from None
        return result.outcome.value


async def reconcile_jobs(ctx: dict[str, Any]) -> object:
    """arq cron: re-enqueue the jobs that are Queued in the database but that the queue lost."""
    work: PeriodicWork = ctx[RECONCILE]
    return await run_once(work, name="reconcile_jobs")


async def sweep_artifacts(ctx: dict[str, Any]) -> object:
    """arq cron: delete expired artifacts and leftovers of crashed writes."""
    work: PeriodicWork = ctx[SWEEP]
    return await run_once(work, name="sweep_artifacts")


WORKER_FUNCTIONS = [run_report_job]

# arq's own lines as it starts a job and as the job ends (arq.worker.Worker.run_job), with the job's
# `<arq id>:<function>` as second argument.
_ARQ_JOB_LINES = frozenset({"%6.2fs → %s(%s)%s", "%6.2fs ← %s ● %s"})


class _WithoutReportJobLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.msg in _ARQ_JOB_LINES
            and isinstance(args, tuple)
            and len(args) > 1
            and str(args[1]).endswith(f":{run_report_job.__name__}")
        )


_WITHOUT_REPORT_JOB_LINES = _WithoutReportJobLines()


def drop_arq_report_job_lines() -> None:
    """Leave out arq's start and end lines of report jobs: the use case writes a line for each with more in it (the
    report, the attempt, the outcome, the duration), and a line costs a job about as much as a round trip. arq's other
    lines (its retries and aborts, the cron jobs' runs, start-up, health) stay."""
    logging.getLogger("arq.worker").addFilter(_WITHOUT_REPORT_JOB_LINES)  # the same filter is added once only


class CronFields(NamedTuple):
    """The `hour`, `minute` and `second` arguments of an arq `cron(...)`."""

    hour: set[int] | int | None = None
    minute: set[int] | int | None = None
    second: set[int] | int = 0


def cron_fields(every_seconds: int) -> CronFields:
    """The arq cron fields that fire every `every_seconds`, on a grid of the wall clock.

    arq matches each field against the next candidate second (`arq.cron.next_cron`): `second={0, 5, ..., 55}`
    fires every 5 s, `minute={0, 2, ...}, second=0` every 2 min, `hour={0, 6, 12, 18}, minute=0, second=0`
    every 6 h. Only periods that divide a minute, or whole minutes that divide an hour, or whole hours that
    divide a day, give evenly spaced runs (a set for 7 s would leave a 4 s gap at each minute's end), so
    others raise ValueError.
    """
    if every_seconds <= 0:
        raise ValueError(f"a period must be positive, got {every_seconds} s")
    if 60 % every_seconds == 0:
        return CronFields(second=set(range(0, 60, every_seconds)))
    if every_seconds % 60 == 0 and 3600 % every_seconds == 0:
        return CronFields(minute=set(range(0, 60, every_seconds // 60)))
    if every_seconds % 3600 == 0 and 86_400 % every_seconds == 0:
        return CronFields(hour=set(range(0, 24, every_seconds // 3600)), minute=0)
    raise ValueError(
        f"a period of {every_seconds} s cannot be scheduled evenly: use a divisor of 60 s, whole minutes that "
        "divide an hour, or whole hours that divide a day"
    )


def cron_jobs(*, reconcile_every_seconds: int, sweep_every_seconds: int) -> list[CronJob]:
    """The periodic work of every worker. Each worker enqueues each tick under the same arq job id
    (`cron:<name>:<tick in ms>`, `unique=True`), so with N workers one of them runs it. Tolerable duplicates
    remain (a worker whose clock is off, or a tick enqueued again after its run ended): both jobs are idempotent.

    The reconciler also runs as each worker starts (`run_at_startup`, with an id of that worker's own), so that a
    restarted deployment re-enqueues what Redis lost without waiting for a tick. Cron jobs share the queue and
    `max_jobs` with report jobs: a worker whose every slot runs a report starts them late.
    """
    return [
        _every(reconcile_jobs, reconcile_every_seconds, run_at_startup=True),
        _every(sweep_artifacts, sweep_every_seconds),
    ]


def _every(function: WorkerCoroutine, every_seconds: int, *, run_at_startup: bool = False) -> CronJob:
    fields = cron_fields(every_seconds)
    return cron(
        function,
        hour=fields.hour,
        minute=fields.minute,
        second=fields.second,
        run_at_startup=run_at_startup,
        unique=True,
        timeout=PERIODIC_TIMEOUT_SECONDS,
    )


def worker_redis_settings(url: str) -> RedisSettings:
    """Redis settings for the worker: wait for Redis at start-up, and ride out short outages and restarts.

    Without a retry policy, a single dropped connection makes arq's poll loop raise and the worker exit
    (arq #386, #435); with it, redis-py reconnects with backoff (0.5 s doubling to 8 s, about 40 s in all) first.
    """
    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = 10
    settings.retry_on_timeout = True
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError]
    settings.retry = RedisRetry(ExponentialBackoff(cap=8.0, base=0.25), retries=8)
    return settings


def worker_options(
    *,
    max_jobs: int,
    job_timeout_seconds: float,
    max_tries: int,
    queue_name: str,
    redis_url: str | None = None,
    shutdown_grace_seconds: int = 30,
    reconcile_every_seconds: int = 5,
    sweep_every_seconds: int = 60,
) -> dict[str, Any]:
    """Keyword arguments for `arq.worker.Worker` (also usable as WorkerSettings attributes).

    `job_timeout_seconds` must exceed the report timeout. `max_tries` bounds the deliveries of one attempt
    (database down at claim time, a worker restarted mid-job); the use case enqueues each retry as a new
    attempt, so it, not arq, decides when a job has used up its attempts. The ctx must hold RUN_REPORT_JOB,
    RECONCILE and SWEEP (see `cron_jobs` for the periods).
    """
    options: dict[str, Any] = {
        "functions": WORKER_FUNCTIONS,
        "cron_jobs": cron_jobs(
            reconcile_every_seconds=reconcile_every_seconds, sweep_every_seconds=sweep_every_seconds
        ),
        "queue_name": queue_name,
        "max_jobs": max_jobs,
        "poll_delay": 0.05,  # the default 0.5 s caps a worker at max_jobs / 0.5 jobs per second
        "job_timeout": job_timeout_seconds,
        "max_tries": max_tries,
        # Keep no result: status lives in the database, and a kept result would block its arq job id
        # (`<job id>:<attempt>`) until it expires, so a reconciler could not re-enqueue that attempt.
        # A stray duplicate that this lets through is harmless: the claim skips a job that is not Queued.
        "keep_result": 0,
        "allow_abort_jobs": True,
        "retry_jobs": True,
        "health_check_interval": 30,
        # On SIGTERM/SIGINT stop picking jobs and let running ones finish for this long before cancelling.
        "job_completion_wait": shutdown_grace_seconds,
    }
    if redis_url is not None:
        options["redis_settings"] = worker_redis_settings(redis_url)
    return options
