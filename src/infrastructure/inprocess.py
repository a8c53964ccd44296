"""The job queue of the embedded, single-process mode: an asyncio queue, and one task per running job."""

from __future__ import annotations

import asyncio
import functools
import logging
from uuid import UUID

from structlog.contextvars import bound_contextvars

from application.errors import QueueUnavailable, StorageUnavailable
from application.ports import JobQueue
from application.run_report_job import JobHandler

log = logging.getLogger(__name__)

Delivery = tuple[UUID, int]
"""One attempt of one job: (job id, attempt number)."""

CANCEL_WAIT_SECONDS = 5.0
"""How long `stop` waits for cancelled jobs to hand themselves back before giving up on them."""


class InProcessJobQueue(JobQueue):
    """Runs jobs in this process, at most `concurrency` at a time. Nothing survives a restart: the
    database row stays Queued (or Running, until its lease runs out) and the reconciler enqueues it again.

    Idempotent per attempt: a (job id, attempt) that is waiting (also for its delay) or running is not added
    again, while another attempt of the same job is, so the use case can enqueue attempt n + 1 while attempt n
    is still finishing. What a run returns is not looked at: the use case records every outcome and enqueues
    its own retries. StorageUnavailable (the database is down at claim time) brings the attempt back with a
    bounded backoff, and it is dropped with an error log after `storage_retries` tries. Any other handler
    exception is logged and the queue carries on. After `stop()`, enqueue raises QueueUnavailable.
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
        self._slots = asyncio.Semaphore(concurrency)
        self._storage_retries = storage_retries
        self._retry_base = storage_retry_base_seconds
        self._retry_max = storage_retry_max_seconds
        self._ready: asyncio.Queue[Delivery] = asyncio.Queue()
        self._waiting: set[Delivery] = set()
        self._timers: dict[Delivery, asyncio.TimerHandle] = {}
        self._running: dict[Delivery, asyncio.Task[None]] = {}
        self._storage_failures: dict[Delivery, int] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        """Attempts queued, or waiting for their delay to pass."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    async def enqueue(self, job_id: UUID, *, attempt: int = 1, delay_seconds: float = 0) -> None:
        if self._closed:
            raise QueueUnavailable("the in-process queue is stopped")
        delivery = (job_id, attempt)
        if delivery in self._waiting or delivery in self._running:
            return
        self._schedule(delivery, delay_seconds)

    async def abort(self, job_id: UUID, attempt: int) -> None:
        """Cancel that attempt if it is running (the use case hands the job back), or drop it if it waits."""
        delivery = (job_id, attempt)
        self._drop_waiting(delivery)
        task = self._running.get(delivery)
        if task is not None:
            task.cancel()
            log.info("attempt %d of job %s aborted", attempt, job_id)

    async def start(self, handler: JobHandler | None = None) -> None:
        """Start taking jobs; the handler may be given here when it was not at construction."""
        self._handler = handler = handler or self._handler
        if handler is None:
            raise ValueError("InProcessJobQueue needs a handler to start")
        if self._dispatcher is None and not self._closed:
            self._dispatcher = asyncio.create_task(self._dispatch(handler), name="job-dispatcher")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop taking jobs and drop the waiting ones; let running ones finish for up to `grace_seconds`, then
        cancel them and wait (up to CANCEL_WAIT_SECONDS) while they hand their jobs back."""
        self._closed = True
        for delivery in list(self._waiting):
            self._drop_waiting(delivery)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        running = list(self._running.values())
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace_seconds)
        if not late:
            return
        log.warning("%d job(s) still running after %.1f s are cancelled", len(late), grace_seconds)
        for task in late:
            task.cancel()
        _, stuck = await asyncio.wait(late, timeout=CANCEL_WAIT_SECONDS)
        if stuck:
            log.error("%d cancelled job(s) did not end within %.1f s", len(stuck), CANCEL_WAIT_SECONDS)

    def _schedule(self, delivery: Delivery, delay_seconds: float) -> None:
        self._waiting.add(delivery)
        if delay_seconds > 0:
            self._timers[delivery] = asyncio.get_running_loop().call_later(delay_seconds, self._release, delivery)
        else:
            self._ready.put_nowait(delivery)

    def _release(self, delivery: Delivery) -> None:
        self._timers.pop(delivery, None)
        self._ready.put_nowait(delivery)

    def _drop_waiting(self, delivery: Delivery) -> None:
        """Forget a waiting attempt; an entry it left in the ready queue is skipped when it comes up."""
        self._waiting.discard(delivery)
        self._storage_failures.pop(delivery, None)
        timer = self._timers.pop(delivery, None)
        if timer is not None:
            timer.cancel()

    async def _dispatch(self, handler: JobHandler) -> None:
        while True:
            delivery = await self._ready.get()
            if delivery not in self._waiting:
                continue  # aborted while it waited
            await self._slots.acquire()
            if delivery not in self._waiting:  # aborted while it waited for a slot
                self._slots.release()
                continue
            self._waiting.discard(delivery)
            task = asyncio.create_task(self._run(handler, delivery), name=f"job-{delivery[0]}-{delivery[1]}")
            self._running[delivery] = task
            task.add_done_callback(functools.partial(self._finished, delivery))

    def _finished(self, delivery: Delivery, task: asyncio.Task[None]) -> None:
        if self._running.get(delivery) is task:
            del self._running[delivery]
        self._slots.release()

    async def _run(self, handler: JobHandler, delivery: Delivery) -> None:
        job_id, _ = delivery
        with bound_contextvars(job_id=str(job_id)):
            try:
                await handler(job_id)
            except StorageUnavailable:
                delay = self._storage_retry_delay(delivery)
                if delay is not None and not self._closed:
                    self._schedule(delivery, delay)
                return
            except Exception:
                log.exception("job %s: the handler failed", job_id)
            self._storage_failures.pop(delivery, None)

    def _storage_retry_delay(self, delivery: Delivery) -> float | None:
        job_id, _ = delivery
        failures = self._storage_failures.get(delivery, 0) + 1
        if failures > self._storage_retries:
            self._storage_failures.pop(delivery, None)
            log.error("job %s: the database stayed unavailable for %d tries; left for the reconciler", job_id, failures)
            return None
        self._storage_failures[delivery] = failures
        log.warning(
            "job %s: the database is unavailable; trying again (%d/%d)", job_id, failures, self._storage_retries
        )
        return min(self._retry_max, self._retry_base * 2.0 ** (failures - 1))
