"""POST /api/v1/reports/{reportId}/generate: 202 with the job's URLs, and every way it can be refused."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from domain.jobs import ErrorCode, JobStatus
from tests.unit.api.conftest import NOT_A_UUID, POLL_AFTER_SECONDS, UNKNOWN_ID, Backend, Client


def generate_url(report_id: object) -> str:
    return f"/api/v1/reports/{report_id}/generate"


async def test_generate_answers_202_with_location_retry_after_and_absolute_urls(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()

    response = await client.post(
        generate_url(report.id), json={"parameters": {"region": "EU"}, "format": "json"}, headers=alice
    )

    assert response.status_code == 202
    body = response.json()
    job_id = UUID(body["jobId"])
    status_url = f"http://testserver.local/api/v1/jobs/{job_id}"
    assert body == {
        "jobId": str(job_id),
        "status": "Queued",
        "statusUrl": status_url,
        "resultUrl": f"{status_url}/result",
    }
    assert response.headers["location"] == status_url
    assert response.headers["retry-after"] == str(POLL_AFTER_SECONDS)
    job = backend.db.jobs[job_id]
    assert (job.owner_id, job.format, job.parameters) == ("alice", "json", {"region": "EU", "since": "2026-01-01"})
    assert backend.db.log == [f"commit {job_id}", f"enqueue {job_id}"]


@pytest.mark.parametrize("body", [None, b"", b"{}"], ids=["absent", "empty", "empty-object"])
async def test_generate_body_is_optional(
    client: Client, backend: Backend, alice: dict[str, str], body: bytes | None
) -> None:
    report = backend.add_report(parameters=(), query="SELECT 1")

    response = await client.post(generate_url(report.id), content=body, headers=alice)

    assert response.status_code == 202
    assert backend.db.jobs[UUID(response.json()["jobId"])].format == "csv"


async def test_generate_hands_the_request_id_to_the_job(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()

    response = await client.post(
        generate_url(report.id), json={"parameters": {"region": "EU"}}, headers={**alice, "X-Request-ID": "req-42"}
    )

    assert response.headers["x-request-id"] == "req-42"
    assert backend.db.jobs[UUID(response.json()["jobId"])].request_id == "req-42"


async def test_generate_for_unknown_report_is_404(client: Client, backend: Backend, alice: dict[str, str]) -> None:
    response = await client.post(generate_url(UNKNOWN_ID), headers=alice)

    assert response.status_code == 404
    assert response.json()["type"] == "urn:reportgen:problem:report-not-found"
    assert backend.queue.enqueued == []


async def test_report_id_that_is_not_a_uuid_is_400(client: Client, alice: dict[str, str]) -> None:
    response = await client.post(generate_url(NOT_A_UUID), json={}, headers=alice)

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "reportId", "message": "Invalid UUID"}]


@pytest.mark.parametrize(
    "changes", [{"async_enabled": False}, {"delivery_target": "EMAIL"}], ids=["async-disabled", "email-delivery"]
)
async def test_report_not_configured_for_async_api_delivery_is_409(
    client: Client, backend: Backend, alice: dict[str, str], changes: dict[str, Any]
) -> None:
    report = backend.add_report(**changes)

    response = await client.post(generate_url(report.id), json={"parameters": {"region": "EU"}}, headers=alice)

    assert response.status_code == 409
    assert response.json()["type"] == "urn:reportgen:problem:report-not-async-deliverable"
    assert backend.db.jobs == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"parameters": {"region": "EU", "colour": "red"}}, "parameters.colour"),
        ({"parameters": {}}, "parameters.region"),
        ({"parameters": {"region": 7}}, "parameters.region"),
        ({"parameters": {"region": "EU", "since": "last week"}}, "parameters.since"),
        ({"parameters": {"region": "EU"}, "format": "xlsx"}, "format"),
        ({"parameters": []}, "parameters"),
        ({"parameters": {"region": "EU"}, "formats": "csv"}, "formats"),
        ({"format": 3}, "format"),
    ],
    ids=["unknown", "missing", "mistyped", "bad-date", "unsupported-format", "list", "unknown-key", "format-type"],
)
async def test_invalid_generate_request_is_422_naming_the_field(
    client: Client, backend: Backend, alice: dict[str, str], body: dict[str, Any], field: str
) -> None:
    report = backend.add_report()

    response = await client.post(generate_url(report.id), json=body, headers=alice)

    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:reportgen:problem:invalid-input"
    assert field in [e["field"] for e in problem["errors"]]
    assert backend.db.jobs == {}


@pytest.mark.parametrize("body", [b"not json", b'{"parameters": ', b"\xff\xfe"], ids=["text", "truncated", "binary"])
async def test_generate_body_that_is_not_json_is_400(
    client: Client, backend: Backend, alice: dict[str, str], body: bytes
) -> None:
    report = backend.add_report()

    response = await client.post(
        generate_url(report.id), content=body, headers={**alice, "Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert backend.db.jobs == {}


async def test_database_down_on_generate_is_503_with_retry_after(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()
    backend.db.unavailable = True

    response = await client.post(generate_url(report.id), json={"parameters": {"region": "EU"}}, headers=alice)

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["type"] == "urn:reportgen:problem:storage-unavailable"
    assert "fake" not in response.text


async def test_queue_down_is_503_and_the_job_is_left_failed_as_never_queued(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()
    backend.queue.fail = True

    response = await client.post(generate_url(report.id), json={"parameters": {"region": "EU"}}, headers=alice)

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["type"] == "urn:reportgen:problem:queue-unavailable"
    [job] = backend.db.jobs.values()
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == ErrorCode.QUEUE_UNAVAILABLE


async def test_huge_generate_body_is_413(client: Client, backend: Backend, alice: dict[str, str]) -> None:
    report = backend.add_report()

    response = await client.post(
        generate_url(report.id), json={"parameters": {"region": "x" * (100 * 1024)}}, headers=alice
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert backend.db.jobs == {}
