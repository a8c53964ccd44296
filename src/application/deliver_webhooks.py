"""Deliver the webhooks of ended jobs: at least once, with retries on a schedule, the outcome kept on the job."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.ports import (
    CallbackOutbox,
    Clock,
    JobEventBody,
    JobTransition,
    WebhookAnswer,
    WebhookMessage,
    WebhookSender,
)
from domain.callbacks import Callback, CallbackStatus
from domain.errors import ConcurrentUpdate
from domain.jobs import JobExecutionLog

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = (5.0, 300.0, 1800.0, 7200.0, 18_000.0, 36_000.0, 36_000.0)
"""Svix's schedule: after the first attempt, retries 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h later (8 in all)."""


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When a failed delivery is tried again: `delays[n - 1]` seconds after the n-th failed attempt, each stretched or
    shrunk by up to `jitter` (a fraction) at random, so that the retries of many jobs that failed together spread
    out; none after the last delay."""

    delays: tuple[float, ...] = DEFAULT_RETRY_SECONDS
    jitter: float = 0.1

    def next_delay(self, failed_attempts: int, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds until the next attempt after `failed_attempts` failed ones; None when the schedule has ended."""
        if not 1 <= failed_attempts <= len(self.delays):
            return None
        return self.delays[failed_attempts - 1] * (1 + self.jitter * (2 * rand() - 1))


def made_due(transitions: Sequence[JobTransition]) -> bool:
    """Whether these committed transitions made a delivery due: a job with a callback ended (the entity scheduled
    its first attempt in the same write)."""
    return any(
        t.change.new.is_terminal and t.job.callback is not None and t.job.callback.status is CallbackStatus.PENDING
        for t in transitions
    )


@dataclass(frozen=True, slots=True)
class Deliveries:
    """What one run did, by outcome of each attempt."""

    delivered: int = 0
    retried: int = 0
    """Failed attempts with another one scheduled."""
    failed: int = 0
    """Failed attempts that were the last (the schedule ended, or the job's result expired first)."""
    gone: int = 0
    """The receiver answered 410 Gone: no more attempts."""


class DeliverWebhooks:
    """Deliver every webhook due now; safe to run often and from several workers at once.

    A job that asked for a callback owes one delivery once it ends: Succeeded, Failed or Cancelled. Each run claims
    the deliveries due (each claimed one is held for `hold_seconds`, longer than an attempt may take, so that two
    workers never make the same attempt and a lost worker's attempt is made again afterwards) and makes one attempt
    of each, at once. A 2xx answer ends the delivery, 410 Gone stops it; any other answer, a timeout, a connection
    error or a refused address is retried on `schedule`, until it ends or the job's result expires (failed). Every
    attempt sends the same `webhook-id`, so a receiver can drop a repeat.
    """

    def __init__(
        self,
        outbox: CallbackOutbox,
        sender: WebhookSender,
        render: JobEventBody,
        clock: Clock,
        *,
        schedule: RetrySchedule | None = None,
        hold_seconds: float = 60.0,
        batch: int = 50,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._render = render
        self._clock = clock
        self._schedule = schedule or RetrySchedule()
        self._hold = timedelta(seconds=hold_seconds)
        self._batch = batch
        self._rand = rand

    async def execute(self) -> Deliveries:
        now = self._clock()
        jobs = await self._outbox.claim_due(now, now + self._hold, self._batch)
        if not jobs:
            return Deliveries()
        outcomes = await asyncio.gather(*(self._deliver(job) for job in jobs), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # the others were recorded; this one is made again once its hold ends
        return Deliveries(**Counter(outcome for outcome in outcomes if isinstance(outcome, str)))

    async def _deliver(self, job: JobExecutionLog) -> str | None:
        """One attempt, recorded; the name of its outcome (a field of Deliveries), None if it could not be recorded."""
        callback = job.callback
        if callback is None:  # the claim selects pending callbacks only
            return None
        message = WebhookMessage(
            webhook_id=job.webhook_id, url=callback.url, body=self._render(job), sent_at=self._clock()
        )
        answer = await self._sender.send(message)
        job.callback, outcome = self._after(job, callback, answer)
        try:
            await self._outbox.record(job)
        except ConcurrentUpdate:
            log.info("webhook %s: the job changed meanwhile; the attempt will be made again", job.webhook_id)
            return None
        if outcome != "delivered":
            log.info("webhook %s: %s (%s)", job.webhook_id, outcome, job.callback.last_error)
        return outcome

    def _after(self, job: JobExecutionLog, callback: Callback, answer: WebhookAnswer) -> tuple[Callback, str]:
        if answer.status is not None and 200 <= answer.status < 300:
            return callback.delivered(), "delivered"
        if answer.status == 410:
            return callback.gone("the receiver answered 410 Gone"), "gone"
        error = answer.error or f"the receiver answered {answer.status}"
        now = self._clock()
        delay = self._schedule.next_delay(callback.attempts + 1, self._rand)
        if delay is None:
            return callback.failed(f"{error}; no retry left"), "failed"
        at = now + timedelta(seconds=delay)
        if _expires_before(job, at):
            return callback.failed(f"{error}; the result expires before the next retry"), "failed"
        return callback.retry(error, at), "retried"


def _expires_before(job: JobExecutionLog, moment: datetime) -> bool:
    return job.expires_at is not None and job.expires_at <= moment
