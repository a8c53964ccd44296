"""The job queue on Redis through arq: only job ids travel, and a dead Redis is reported within seconds."""

from __future__ import annotations

import asyncio
from uuid import UUID

from arq.connections import ArqRedis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from application.errors import QueueUnavailable
from application.ports import JobQueue

JOB_FUNCTION = "run_report_job"
CONNECT_TIMEOUT_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 1.0
ENQUEUE_TIMEOUT_SECONDS = 2.0


def arq_job_id(job_id: UUID, attempt: int) -> str:
    """arq refuses a second job with an id it still holds, so one id per attempt keeps re-enqueueing possible."""
    return f"{job_id}:{attempt}"


def create_redis_pool(url: str, *, queue_name: str) -> ArqRedis:
    """A lazily connecting arq client for the API side: it does not ping, so the app starts with Redis down.

    Short connect and socket timeouts and one retry on a dropped connection (a pooled connection that
    died with a Redis restart) keep a call against a dead Redis to about a second or two.
    Close it with `await pool.aclose()`.
    """
    pool: ArqRedis = ArqRedis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        retry_on_error=[RedisConnectionError],
    )
    pool.default_queue_name = queue_name
    return pool


class ArqJobQueue(JobQueue):
    """Enqueues `run_report_job(<job id>)` with the arq job id `<job id>:<attempt>`.

    A double enqueue of one attempt is a no-op while arq holds that id (waiting, running, or its
    result kept); another attempt gets a job of its own. Raises QueueUnavailable within about
    ENQUEUE_TIMEOUT_SECONDS when Redis cannot take the job.
    """

    def __init__(self, redis: ArqRedis, queue_name: str, *, timeout_seconds: float = ENQUEUE_TIMEOUT_SECONDS) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._timeout = timeout_seconds

    async def enqueue(self, job_id: UUID, *, attempt: int = 1, delay_seconds: float = 0) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.enqueue_job(
                    JOB_FUNCTION,
                    str(job_id),
                    _job_id=arq_job_id(job_id, attempt),
                    _queue_name=self._queue_name,
                    _defer_by=delay_seconds or None,
                )
        except (RedisError, OSError) as exc:  # OSError covers TimeoutError and refused connections
            raise QueueUnavailable(f"Redis did not take job {job_id}: {type(exc).__name__}") from exc
