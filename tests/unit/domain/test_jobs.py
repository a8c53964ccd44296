from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.errors import InvalidJobTransition, ReportNotAsyncDeliverable
from domain.jobs import ArtifactRef, JobExecutionLog, JobStatus
from domain.reports import ParameterType, ReportConfiguration, ReportParameter

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=15)
ARTIFACT = ArtifactRef("k", 3, "abc")


def queued_job(**report_changes: Any) -> JobExecutionLog:
    report = ReportConfiguration(
        id=uuid4(),
        name="Sales by Region!",
        query="SELECT :n AS n",
        parameters=(ReportParameter("n", ParameterType.INTEGER, default=1),),
        **report_changes,
    )
    return JobExecutionLog.queue(
        job_id=uuid4(), report=report, request=report.resolve({}, None), owner_id="alice", now=NOW
    )


def test_new_job_is_queued_with_the_report_snapshot() -> None:
    job = queued_job()
    assert job.status is JobStatus.QUEUED
    assert (job.progress, job.attempts) == (0, 0)
    assert job.query == "SELECT :n AS n"
    assert [(b.name, b.value) for b in job.bindings()] == [("n", 1)]


def test_job_cannot_be_queued_for_a_report_not_served_by_the_api() -> None:
    with pytest.raises(ReportNotAsyncDeliverable):
        queued_job(delivery_target="EMAIL")


def test_happy_path_counts_attempts_and_ends_at_full_progress() -> None:
    job = queued_job()
    job.start(NOW, LEASE)
    assert (job.status, job.attempts) == (JobStatus.RUNNING, 1)
    job.succeed(NOW, ARTIFACT)
    assert (job.status, job.progress, job.artifact) == (JobStatus.SUCCEEDED, 100, ARTIFACT)


@pytest.mark.parametrize("end", ["succeed", "fail", "cancel"])
def test_terminal_statuses_never_change(end: str) -> None:
    job = queued_job()
    job.start(NOW, LEASE)
    ends: dict[str, Callable[[], None]] = {
        "succeed": lambda: job.succeed(NOW, ARTIFACT),
        "fail": lambda: job.fail(NOW, "X", "x"),
        "cancel": lambda: job.cancel(NOW),
    }
    ends[end]()
    moves: tuple[Callable[[], None], ...] = (
        lambda: job.start(NOW, LEASE),
        lambda: job.fail(NOW, "Y", "y"),
        lambda: job.succeed(NOW, ARTIFACT),
        lambda: job.cancel(NOW),
        job.requeue,
    )
    for move in moves:
        with pytest.raises(InvalidJobTransition):
            move()


def test_queued_job_cannot_succeed_without_running() -> None:
    with pytest.raises(InvalidJobTransition):
        queued_job().succeed(NOW, ARTIFACT)


def test_progress_never_decreases_and_stays_below_100_while_running() -> None:
    job = queued_job()
    assert not job.report_progress(10), "a queued job has no progress to report"
    job.start(NOW, LEASE)
    assert job.report_progress(40)
    assert not job.report_progress(30)
    job.report_progress(100)
    assert job.progress == 99


def test_requeue_keeps_attempts_and_a_new_attempt_gets_a_new_artifact_key() -> None:
    job = queued_job()
    job.start(NOW, LEASE)
    first_key = job.artifact_key()
    job.requeue()
    job.start(NOW, LEASE)
    assert job.attempts == 2
    assert job.artifact_key() != first_key


def test_visibility_is_owner_or_admin() -> None:
    job = queued_job()
    assert job.visible_to("alice", is_admin=False)
    assert not job.visible_to("bob", is_admin=False)
    assert job.visible_to("bob", is_admin=True)


def test_filename_is_a_safe_slug_of_the_report_name() -> None:
    job = queued_job()
    assert job.filename == f"sales-by-region-{str(job.id)[:8]}.csv"


def test_lease_expires_only_for_a_running_job_past_its_lease() -> None:
    job = queued_job()
    assert not job.lease_expired(NOW + timedelta(hours=1))
    job.start(NOW, LEASE)
    assert not job.lease_expired(LEASE - timedelta(seconds=1))
    assert job.lease_expired(LEASE)
    job.renew_lease(LEASE + timedelta(seconds=15))
    assert not job.lease_expired(LEASE)


def test_result_expiry_and_discarded_artifact_keep_the_job_succeeded() -> None:
    job = queued_job()
    job.start(NOW, LEASE)
    job.succeed(NOW, ARTIFACT, expires_at=NOW + timedelta(days=1))
    assert job.lease_expires_at is None
    assert not job.result_expired(NOW)
    assert job.result_expired(NOW + timedelta(days=1))
    job.discard_artifact()
    assert (job.status, job.artifact) == (JobStatus.SUCCEEDED, None)


def test_only_a_succeeded_job_can_lose_its_artifact() -> None:
    with pytest.raises(InvalidJobTransition):
        queued_job().discard_artifact()


def test_job_of_a_lost_worker_is_retried_until_its_last_attempt_then_failed_worker_lost() -> None:
    job = queued_job()
    job.start(NOW, LEASE)
    job.release_from_lost_worker(NOW, max_attempts=2)
    first = (job.status, job.error and job.error.code)
    job.start(NOW, LEASE)
    job.release_from_lost_worker(NOW, max_attempts=2)
    second = (job.status, job.error and job.error.code)
    assert first == (JobStatus.QUEUED, "WORKER_LOST")
    assert second == (JobStatus.FAILED, "WORKER_LOST")
