"""The job queue on Redis through arq: only job ids travel, and a dead Redis is reported within seconds."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from application.errors import QueueUnavailable
from application.ports import JobQueue

log = logging.getLogger(__name__)

JOB_FUNCTION = "run_report_job"
CONNECT_TIMEOUT_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 1.0
ENQUEUE_TIMEOUT_SECONDS = 2.0

# What `arq.jobs.Job.abort` writes, without its wait for the result, and only for a job that arq holds:
# KEYS: the job's definition, the queue, arq's abort set; ARGV: the arq job id, now in ms.
# A deferred job is moved to the front (as arq does), so that a worker drops it at once ("aborted before start").
_ABORT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[2], 1, ARGV[1])
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""


def arq_job_id(job_id: UUID, attempt: int) -> str:
    """arq refuses a second job with an id it still holds, so one id per attempt keeps re-enqueueing possible."""
    return f"{job_id}:{attempt}"


CONNECTION_RACE_ERRORS = (AttributeError, TypeError)
"""What redis-py's asyncio connection raises, instead of its ConnectionError, when the connection is closed while a
command is being written to it (a cancelled request closing it as another takes it: `'NoneType' object has no
attribute 'writelines'`; redis/redis-py#4287, fixed in redis-py 8, and arq needs redis below 6). Retried like a
dropped connection, and a QueueUnavailable if it happens again."""


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
        retry_on_error=[RedisConnectionError, *CONNECTION_RACE_ERRORS],
    )
    pool.default_queue_name = queue_name
    return pool


# arq's `enqueue_job` in one round trip instead of three (WATCH, EXISTS, MULTI/EXEC): the same keys, values and
# expiry, written only if arq holds neither the job nor its result. If it does, and the attempt's delivery lock was
# taken more than ARGV[6] ms ago (arq sets it for ARGV[5] ms), the worker that took it is gone: release the lock.
# KEYS: the job's definition, its result, the queue, its in-progress lock.
# ARGV: arq job id, serialized job, score (ms), expiry of the definition (ms), lock ms, lost-after ms.
_ENQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  local ttl = redis.call('PTTL', KEYS[4])
  if ttl > 0 and tonumber(ARGV[5]) - ttl > tonumber(ARGV[6]) then
    redis.call('DEL', KEYS[4])
    return 2
  end
  return 0
end
redis.call('PSETEX', KEYS[1], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""
_RELEASED = 2


class ArqJobQueue(JobQueue):
    """Enqueues `run_report_job(<job id>)` with the arq job id `<job id>:<attempt>`.

    A double enqueue of one attempt is a no-op while arq holds that id (waiting, running, or its
    result kept); another attempt gets a job of its own. `abort` cancels one attempt through arq's own
    abort requests. Both raise QueueUnavailable within about ENQUEUE_TIMEOUT_SECONDS when Redis cannot be reached.

    A delivery lost with its worker: arq marks a job it starts as in progress for the longest job timeout
    plus 10 s (`delivery_lock_seconds`) and will not start it again, nor take it again under the same id,
    before that lock expires. Our callers enqueue an attempt only while its job row waits for that attempt,
    and a live worker claims the row within moments of starting it; so when an enqueue finds the attempt
    locked for longer than `lost_after_seconds`, the worker that took it is gone, and the lock is released
    for any worker to take the job at its next poll. If the worker was merely slow, both run it and the
    claim on the job row lets one of them through.
    """

    def __init__(
        self,
        redis: ArqRedis,
        queue_name: str,
        *,
        timeout_seconds: float = ENQUEUE_TIMEOUT_SECONDS,
        delivery_lock_seconds: float = 370.0,
        lost_after_seconds: float = 15.0,
    ) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._timeout = timeout_seconds
        self._lock_ms = int(delivery_lock_seconds * 1000)
        self._lost_after_ms = int(lost_after_seconds * 1000)
        self._abort_script = redis.register_script(_ABORT_SCRIPT)
        self._enqueue_script = redis.register_script(_ENQUEUE_SCRIPT)

    async def enqueue(self, job_id: UUID, *, attempt: int = 1, delay_seconds: float = 0) -> None:
        arq_id = arq_job_id(job_id, attempt)
        enqueued_ms = timestamp_ms()
        score = enqueued_ms + int(delay_seconds * 1000)
        payload = serialize_job(
            JOB_FUNCTION, (str(job_id),), {}, None, enqueued_ms, serializer=self._redis.job_serializer
        )
        keys = (job_key_prefix + arq_id, result_key_prefix + arq_id, self._queue_name, in_progress_key_prefix + arq_id)
        expires_ms = score - enqueued_ms + self._redis.expires_extra_ms
        try:
            async with asyncio.timeout(self._timeout):
                done = await self._enqueue_script(
                    keys=keys, args=(arq_id, payload, score, expires_ms, self._lock_ms, self._lost_after_ms)
                )
            if done == _RELEASED:
                log.warning("attempt %d of job %s was taken by a worker that is gone; released it", attempt, job_id)
        except (RedisError, OSError, *CONNECTION_RACE_ERRORS) as exc:  # OSError: TimeoutError, refused connections
            raise QueueUnavailable(f"Redis did not take job {job_id}: {type(exc).__name__}") from exc

    async def abort(self, job_id: UUID, attempt: int) -> None:
        """Ask the worker running that attempt to cancel it (workers need `allow_abort_jobs=True`); returns at once.

        The worker sees the request on its next poll (every `poll_delay`) and cancels the job's task; a job not
        started yet is dropped when a worker takes it. An id that arq does not hold (unknown, finished) is left
        alone: nothing is written.

        Why only ids that arq holds: arq keeps abort requests in one sorted set (`arq:abort`, shared by every
        queue of the Redis database) that it never prunes (arq #290, #405, #485), and a worker aborts any job
        whose id is in it when the job starts, so a request for an id that is not running would abort a later
        job with that id. Our ids are per attempt, so a later attempt never reuses one; and check-and-write is
        one atomic script, so a job ending at that moment either gets the request (its end, or its abort,
        removes it) or leaves nothing behind. Residual risk: a request outlives its job only if the job's keys
        vanish without arq's own clean-up (deleted by hand; FLUSHDB takes the request too), and it would then
        abort that same attempt id if enqueued again, which the reconciler does only for a row still Queued
        with that attempt next, i.e. a job whose cancel did not commit.
        """
        arq_id = arq_job_id(job_id, attempt)
        keys = (job_key_prefix + arq_id, self._queue_name, abort_jobs_ss)
        try:
            async with asyncio.timeout(self._timeout):
                marked = await self._abort_script(keys=keys, args=(arq_id, timestamp_ms()))
        except (RedisError, OSError, *CONNECTION_RACE_ERRORS) as exc:
            raise QueueUnavailable(f"Redis did not take the abort of job {job_id}: {type(exc).__name__}") from exc
        if marked:
            log.info("abort of attempt %d of job %s requested", attempt, job_id)
        else:
            log.info("attempt %d of job %s is not in the queue: nothing to abort", attempt, job_id)
