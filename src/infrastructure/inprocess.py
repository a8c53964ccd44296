"""The job queue of the embedded, single-process mode: an asyncio queue and a few consumer tasks."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from structlog.contextvars import bound_contextvars

from application.errors import QueueUnavailable, StorageUnavailable
from application.ports import JobQueue
from application.run_report_job import JobHandler, Outcome

log = logging.getLogger(__name__)


class InProcessJobQueue(JobQueue):
    """Runs jobs in this process, at most `concurrency` at a time. Nothing survives a restart: the
    database row stays Queued and the reconciler enqueues it again.

    Idempotent: an id that is waiting (also for a retry) or running is not added again. A RETRY outcome
    comes back after `retry_in_seconds`; StorageUnavailable (the database is down at claim time) comes
    back with a bounded backoff, and the job is dropped with an error log after `storage_retries` tries.
    Any other handler exception is logged and the consumer carries on. After `stop()`, enqueue raises
    QueueUnavailable.
    """

    def __init__(
        self,
        handler: JobHandler | None = None,
        *,
        concurrency: int = 2,
        storage_retries: int = 5,
        storage_retry_base_seconds: float = 1.0,
        storage_retry_max_seconds: float = 30.0,
    ) -> None:
        self._handler = handler
        self._concurrency = concurrency
        self._storage_retries = storage_retries
        self._retry_base = storage_retry_base_seconds
        self._retry_max = storage_retry_max_seconds
        self._queue: asyncio.Queue[UUID | None] = asyncio.Queue()
        self._waiting: set[UUID] = set()
        self._running: set[UUID] = set()
        self._timers: dict[UUID, asyncio.TimerHandle] = {}
        self._storage_failures: dict[UUID, int] = {}
        self._consumers: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def waiting(self) -> int:
        """Jobs queued or waiting for a retry delay to pass."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    async def enqueue(self, job_id: UUID, *, attempt: int = 1, delay_seconds: float = 0) -> None:
        if self._closed:
            raise QueueUnavailable("the in-process queue is stopped")
        if job_id in self._waiting or job_id in self._running:
            return
        self._schedule(job_id, delay_seconds)

    async def start(self, handler: JobHandler | None = None) -> None:
        """Start the consumers; the handler may be given here when it was not at construction."""
        self._handler = handler = handler or self._handler
        if handler is None:
            raise ValueError("InProcessJobQueue needs a handler to start")
        if self._consumers or self._closed:
            return
        self._consumers = [
            asyncio.create_task(self._consume(handler), name=f"job-consumer-{index}")
            for index in range(self._concurrency)
        ]

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop taking jobs, let running ones finish for up to `grace_seconds`, then cancel them."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._waiting.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        for _ in self._consumers:
            self._queue.put_nowait(None)  # one stop marker per consumer, taken once its current job is done
        if not self._consumers:
            return
        _, late = await asyncio.wait(self._consumers, timeout=grace_seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        if late:
            log.warning("%d job(s) still running after %.1f s were cancelled", len(late), grace_seconds)
        self._consumers = []

    def _schedule(self, job_id: UUID, delay_seconds: float) -> None:
        self._waiting.add(job_id)
        if delay_seconds > 0:
            self._timers[job_id] = asyncio.get_running_loop().call_later(delay_seconds, self._release, job_id)
        else:
            self._queue.put_nowait(job_id)

    def _release(self, job_id: UUID) -> None:
        self._timers.pop(job_id, None)
        if not self._closed:
            self._queue.put_nowait(job_id)

    async def _consume(self, handler: JobHandler) -> None:
        while (job_id := await self._queue.get()) is not None:
            self._waiting.discard(job_id)
            self._running.add(job_id)
            try:
                delay = await self._run(handler, job_id)
            finally:
                self._running.discard(job_id)
            if delay is not None and not self._closed:
                self._schedule(job_id, delay)

    async def _run(self, handler: JobHandler, job_id: UUID) -> float | None:
        """Run the handler once; the delay after which the job should run again, or None when it is done."""
        with bound_contextvars(job_id=str(job_id)):
            try:
                result = await handler(job_id)
            except StorageUnavailable:
                return self._storage_retry_delay(job_id)
            except Exception:
                log.exception("job %s: the handler failed", job_id)
                self._storage_failures.pop(job_id, None)
                return None
        self._storage_failures.pop(job_id, None)
        return result.retry_in_seconds if result.outcome is Outcome.RETRY else None

    def _storage_retry_delay(self, job_id: UUID) -> float | None:
        failures = self._storage_failures.get(job_id, 0) + 1
        if failures > self._storage_retries:
            self._storage_failures.pop(job_id, None)
            log.error("job %s: the database stayed unavailable for %d tries; left for the reconciler", job_id, failures)
            return None
        self._storage_failures[job_id] = failures
        log.warning(
            "job %s: the database is unavailable; trying again (%d/%d)", job_id, failures, self._storage_retries
        )
        return min(self._retry_max, self._retry_base * 2.0 ** (failures - 1))
