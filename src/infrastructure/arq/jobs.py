"""The arq job function and the worker settings that go with it; the composition root adds the lifecycle hooks."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from arq.connections import RedisSettings
from arq.worker import Retry
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from structlog.contextvars import bound_contextvars

from application.errors import StorageUnavailable
from application.run_report_job import JobHandler, Outcome

RUN_REPORT_JOB = "run_report_job"
"""The ctx key under which on_startup must put the job handler (RunReportJob.execute, perhaps instrumented)."""

STORAGE_RETRY_BASE_SECONDS = 1.0
STORAGE_RETRY_MAX_SECONDS = 60.0


def storage_retry_delay(job_try: int) -> float:
    """Backoff while the database is down at claim time: 1 s, 2 s, 4 s, ... up to a minute."""
    return min(STORAGE_RETRY_MAX_SECONDS, STORAGE_RETRY_BASE_SECONDS * 2.0 ** max(0, job_try - 1))


async def run_report_job(ctx: dict[str, Any], job_id: str) -> str:
    """Run one job; a transient failure becomes arq's Retry, every other outcome is already in the job row."""
    handler: JobHandler = ctx[RUN_REPORT_JOB]
    with bound_contextvars(job_id=job_id):
        try:
            result = await handler(UUID(job_id))
        except StorageUnavailable:
            raise Retry(defer=storage_retry_delay(ctx.get("job_try", 1))) from None
        if result.outcome is Outcome.RETRY:
            raise Retry(defer=result.retry_in_seconds)
        return result.outcome.value


WORKER_FUNCTIONS = [run_report_job]


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
) -> dict[str, Any]:
    """Keyword arguments for `arq.worker.Worker` (also usable as WorkerSettings attributes).

    `job_timeout_seconds` must exceed the report timeout; `max_tries` should exceed RunPolicy.max_attempts,
    so that the use case, not arq, decides when a job has used up its retries.
    """
    options: dict[str, Any] = {
        "functions": WORKER_FUNCTIONS,
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
