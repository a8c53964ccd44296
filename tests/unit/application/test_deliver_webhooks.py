"""DeliverWebhooks on fakes of its ports: what each answer does to the delivery, the schedule, and the hold that
keeps two workers from making one attempt."""

from __future__ import annotations

import json
from datetime import timedelta
from uuid import uuid4

import pytest

from application.deliver_webhooks import Deliveries, DeliverWebhooks, RetrySchedule, made_due
from application.ports import JobTransition, WebhookAnswer
from domain.callbacks import Callback, CallbackStatus
from domain.errors import ConcurrentUpdate
from domain.jobs import ArtifactRef, JobExecutionLog, JobStatus, JobStatusChanged
from domain.reports import ReportConfiguration
from tests.fakes import FakeCallbackOutbox, FakeClock, FakeDatabase, FakeWebhookSender

SCHEDULE = RetrySchedule((5.0, 60.0))
HOLD = 30.0


def render(job: JobExecutionLog) -> bytes:
    return json.dumps({"job": str(job.id), "status": job.status.value}).encode()


def deliverer(db: FakeDatabase, sender: FakeWebhookSender, clock: FakeClock) -> DeliverWebhooks:
    return DeliverWebhooks(
        FakeCallbackOutbox(db), sender, render, clock, schedule=SCHEDULE, hold_seconds=HOLD, rand=lambda: 0.5
    )


def ended_job(
    db: FakeDatabase, report: ReportConfiguration, clock: FakeClock, *, ttl: float = 86_400
) -> JobExecutionLog:
    """A job with a callback that just succeeded: its delivery is due now."""
    job = JobExecutionLog.queue(
        job_id=uuid4(),
        report=report,
        request=report.resolve({}, None),
        owner_id="alice",
        now=clock(),
        callback=Callback(url="https://receiver.example/in", status_url="https://api.example/api/v1/jobs/x"),
    )
    job.start(clock(), clock() + timedelta(seconds=30))
    job.succeed(clock(), ArtifactRef("k", 1, "0" * 64), expires_at=clock() + timedelta(seconds=ttl))
    db.jobs[job.id] = job
    return job


def callback(db: FakeDatabase, job: JobExecutionLog) -> Callback:
    stored = db.jobs[job.id].callback
    assert stored is not None
    return stored


async def test_a_2xx_answer_delivers_the_signed_payload_once(
    db: FakeDatabase, report: ReportConfiguration, clock: FakeClock
) -> None:
    job = ended_job(db, report, clock)
    sender = FakeWebhookSender(WebhookAnswer(200))
    deliver = deliverer(db, sender, clock)

    assert await deliver.execute() == Deliveries(delivered=1)
    clock.advance(3600)
    assert await deliver.execute() == Deliveries()

    [message] = sender.sent
    assert (message.webhook_id, message.url) == (f"msg_{job.id}", "https://receiver.example/in")
    assert json.loads(message.body) == {"job": str(job.id), "status": "Succeeded"}
    assert callback(db, job) == Callback(
        url="https://receiver.example/in",
        status_url="https://api.example/api/v1/jobs/x",
        status=CallbackStatus.DELIVERED,
        attempts=1,
    )


async def test_a_failed_attempt_is_retried_on_the_schedule_with_the_same_webhook_id(
    db: FakeDatabase, report: ReportConfiguration, clock: FakeClock
) -> None:
    job = ended_job(db, report, clock)
    sender = FakeWebhookSender(WebhookAnswer(503), WebhookAnswer(None, "ConnectError: refused"), WebhookAnswer(204))
    deliver = deliverer(db, sender, clock)

    assert await deliver.execute() == Deliveries(retried=1)
    assert (callback(db, job).attempts, callback(db, job).last_error) == (1, "the receiver answered 503")
    assert callback(db, job).next_attempt_at == clock() + timedelta(seconds=5)
    clock.advance(4.9)
    assert await deliver.execute() == Deliveries()
    clock.advance(0.1)
    assert await deliver.execute() == Deliveries(retried=1)
    assert callback(db, job).last_error == "ConnectError: refused"
    clock.advance(60)
    assert await deliver.execute() == Deliveries(delivered=1)

    assert {message.webhook_id for message in sender.sent} == {f"msg_{job.id}"}
    assert (callback(db, job).status, callback(db, job).attempts) == (CallbackStatus.DELIVERED, 3)


async def test_410_gone_stops_the_delivery(db: FakeDatabase, report: ReportConfiguration, clock: FakeClock) -> None:
    job = ended_job(db, report, clock)
    sender = FakeWebhookSender(WebhookAnswer(410))
    deliver = deliverer(db, sender, clock)

    assert await deliver.execute() == Deliveries(gone=1)
    clock.advance(3600)
    assert await deliver.execute() == Deliveries()

    assert len(sender.sent) == 1
    assert callback(db, job).status is CallbackStatus.GONE
    assert callback(db, job).next_attempt_at is None


async def test_the_delivery_fails_when_the_schedule_ends(
    db: FakeDatabase, report: ReportConfiguration, clock: FakeClock
) -> None:
    job = ended_job(db, report, clock)
    deliver = deliverer(db, FakeWebhookSender(WebhookAnswer(500)), clock)

    outcomes = []
    for _ in range(4):
        outcomes.append(await deliver.execute())
        clock.advance(61)

    assert outcomes == [Deliveries(retried=1), Deliveries(retried=1), Deliveries(failed=1), Deliveries()]
    assert callback(db, job).status is CallbackStatus.FAILED
    assert callback(db, job).attempts == 3
    assert callback(db, job).last_error == "the receiver answered 500; no retry left"


async def test_the_delivery_fails_when_the_result_expires_before_the_next_retry(
    db: FakeDatabase, report: ReportConfiguration, clock: FakeClock
) -> None:
    job = ended_job(db, report, clock, ttl=4)
    deliver = deliverer(db, FakeWebhookSender(WebhookAnswer(502)), clock)

    assert await deliver.execute() == Deliveries(failed=1)
    assert callback(db, job).last_error == "the receiver answered 502; the result expires before the next retry"


async def test_a_claimed_delivery_is_held_from_other_runs_and_made_again_after_a_lost_worker(
    db: FakeDatabase, report: ReportConfiguration, clock: FakeClock
) -> None:
    ended_job(db, report, clock)
    outbox = FakeCallbackOutbox(db)
    [claimed] = await outbox.claim_due(clock(), clock() + timedelta(seconds=HOLD), 10)  # a worker lost mid-attempt
    sender = FakeWebhookSender(WebhookAnswer(200))
    deliver = deliverer(db, sender, clock)

    assert await deliver.execute() == Deliveries()
    clock.advance(HOLD)
    assert await deliver.execute() == Deliveries(delivered=1)
    assert [message.webhook_id for message in sender.sent] == [claimed.webhook_id]
    with pytest.raises(ConcurrentUpdate):
        await outbox.record(claimed)  # the lost worker's late outcome changes nothing


async def test_only_ended_jobs_with_a_callback_are_delivered(
    db: FakeDatabase, report: ReportConfiguration, clock: FakeClock
) -> None:
    waiting = JobExecutionLog.queue(
        job_id=uuid4(),
        report=report,
        request=report.resolve({}, None),
        owner_id="alice",
        now=clock(),
        callback=Callback(url="https://receiver.example/in", status_url="s"),
    )
    without = JobExecutionLog.queue(
        job_id=uuid4(), report=report, request=report.resolve({}, None), owner_id="alice", now=clock()
    )
    without.cancel(clock())
    db.jobs |= {waiting.id: waiting, without.id: without}
    sender = FakeWebhookSender()

    assert await deliverer(db, sender, clock).execute() == Deliveries()
    assert sender.sent == []


def test_the_schedule_spreads_each_wait_by_the_jitter_and_ends_after_the_last() -> None:
    schedule = RetrySchedule((10.0, 100.0), jitter=0.2)

    assert schedule.next_delay(1, lambda: 0.0) == pytest.approx(8.0)
    assert schedule.next_delay(1, lambda: 1.0) == pytest.approx(12.0)
    assert schedule.next_delay(2, lambda: 0.5) == pytest.approx(100.0)
    assert schedule.next_delay(3, lambda: 0.5) is None


def test_the_default_schedule_is_svixs_after_an_immediate_first_attempt() -> None:
    assert RetrySchedule().delays == (5, 300, 1800, 7200, 18_000, 36_000, 36_000)


def test_the_end_of_a_job_with_a_callback_makes_a_delivery_due_and_nothing_else_does(
    db: FakeDatabase, report: ReportConfiguration, clock: FakeClock
) -> None:
    ended = ended_job(db, report, clock)
    plain = JobExecutionLog.queue(
        job_id=uuid4(), report=report, request=report.resolve({}, None), owner_id="alice", now=clock()
    )
    plain.start(clock(), clock() + timedelta(seconds=30))

    def transitions(job: JobExecutionLog, old: JobStatus) -> list[JobTransition]:
        return [JobTransition(JobStatusChanged(job.id, job.owner_id, old, job.status), job)]

    assert made_due(transitions(ended, JobStatus.RUNNING))
    assert not made_due(transitions(plain, JobStatus.QUEUED)), "a start is no end"
    plain.fail(clock(), "REPORT_TIMEOUT", "slow")
    assert not made_due(transitions(plain, JobStatus.RUNNING)), "an end without a callback"
