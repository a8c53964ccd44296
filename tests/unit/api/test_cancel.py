"""POST /api/v1/jobs/{jobId}/cancel: 202 with the job, 409 once it is terminal, 404 when not visible."""

from __future__ import annotations

import pytest

from domain.jobs import JobExecutionLog, JobStatus
from tests.unit.api.conftest import NOT_A_UUID, STATUS_FIELDS, UNKNOWN_ID, Backend, Client


def cancel_url(job_id: object) -> str:
    return f"/api/v1/jobs/{job_id}/cancel"


async def test_cancel_of_a_queued_job_is_202_cancelled_and_it_never_has_a_result(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.clock.advance(1.5)

    response = await client.post(cancel_url(job.id), headers=alice)
    result = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert response.status_code == 202
    body = response.json()
    assert set(body) == STATUS_FIELDS
    assert (body["jobId"], body["status"]) == (str(job.id), "Cancelled")
    assert body["finishedAt"] == "2026-11-28T10:00:01.500000Z"
    assert body["statusUrl"] == f"http://testserver.local/api/v1/jobs/{job.id}"
    assert "retry-after" not in response.headers
    assert backend.db.jobs[job.id].status is JobStatus.CANCELLED
    assert backend.queue.aborted == []
    assert result.status_code == 409
    problem = result.json()
    assert (problem["type"], problem["jobStatus"]) == ("urn:reportgen:problem:result-not-ready", "Cancelled")


async def test_cancel_of_a_running_job_asks_the_queue_to_abort_its_attempt(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.start(job)

    response = await client.post(cancel_url(job.id), headers=alice)

    assert response.status_code == 202
    assert response.json()["status"] == "Cancelled"
    assert backend.queue.aborted == [(job.id, 1)]


def _finish(backend: Backend, job: JobExecutionLog, status: JobStatus) -> None:
    if status is JobStatus.SUCCEEDED:
        backend.succeed(job, b"n\r\n1\r\n")
    elif status is JobStatus.FAILED:
        job.fail(backend.clock(), "REPORT_QUERY_FAILED", "The report query failed")
    else:
        job.cancel(backend.clock())


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
async def test_cancel_of_a_terminal_job_is_409_with_its_status(
    client: Client, backend: Backend, alice: dict[str, str], status: JobStatus
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    _finish(backend, job, status)

    response = await client.post(cancel_url(job.id), headers=alice)

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["jobStatus"]) == ("urn:reportgen:problem:job-already-finished", status.value)
    assert problem["instance"] == cancel_url(job.id)
    assert backend.db.jobs[job.id].status is status


async def test_cancel_of_another_users_job_is_404_and_leaves_it_alone_but_an_admin_may_cancel_it(
    client: Client, backend: Backend, bob: dict[str, str], admin: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")

    as_bob = await client.post(cancel_url(job.id), headers=bob)
    status_after_bob = backend.db.jobs[job.id].status
    as_admin = await client.post(cancel_url(job.id), headers=admin)

    assert as_bob.status_code == 404
    assert as_bob.json()["type"] == "urn:reportgen:problem:job-not-found"
    assert status_after_bob is JobStatus.QUEUED
    assert as_admin.status_code == 202
    assert backend.db.jobs[job.id].status is JobStatus.CANCELLED


async def test_cancel_of_an_unknown_job_is_404_and_a_non_uuid_job_id_is_400(
    client: Client, alice: dict[str, str]
) -> None:
    unknown = await client.post(cancel_url(UNKNOWN_ID), headers=alice)
    malformed = await client.post(cancel_url(NOT_A_UUID), headers=alice)

    assert unknown.status_code == 404
    assert malformed.status_code == 400
    assert malformed.json()["errors"] == [{"field": "jobId", "message": "Invalid UUID"}]


async def test_cancel_needs_a_token(client: Client, backend: Backend) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")

    response = await client.post(cancel_url(job.id))

    assert response.status_code == 401
    assert backend.db.jobs[job.id].status is JobStatus.QUEUED


async def test_database_down_on_cancel_is_503_with_retry_after(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.db.unavailable = True

    response = await client.post(cancel_url(job.id), headers=alice)

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
