"""GET /api/v1/jobs/{jobId} and /result: the status body, Retry-After, visibility, and the streamed artifact."""

from __future__ import annotations

import hashlib

import pytest

from tests.unit.api.conftest import (
    NOT_A_UUID,
    POLL_AFTER_SECONDS,
    RESULT_TTL,
    STATUS_FIELDS,
    UNKNOWN_ID,
    Backend,
    Client,
)

CSV = b"region,total\r\nEU,12\r\n"


async def test_status_of_a_queued_job_has_the_contract_fields_and_retry_after(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")

    response = await client.get(f"/api/v1/jobs/{job.id}", headers=alice)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_FIELDS
    url = f"http://testserver.local/api/v1/jobs/{job.id}"
    assert body == {
        "jobId": str(job.id), "reportId": str(job.report_id), "status": "Queued", "progress": 0, "format": "csv",
        "parameters": {"region": "EU", "since": "2026-01-01"}, "attempts": 0, "createdAt": "2026-11-28T10:00:00Z",
        "startedAt": None, "finishedAt": None, "expiresAt": None, "error": None, "statusUrl": url,
        "resultUrl": f"{url}/result",
    }  # fmt: skip
    assert response.headers["retry-after"] == str(POLL_AFTER_SECONDS)


async def test_status_of_a_terminal_job_has_no_retry_after(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.start(job)
    backend.clock.advance(2.5)
    job.fail(backend.clock(), "REPORT_QUERY_FAILED", "The report query failed: check the parameters")

    response = await client.get(f"/api/v1/jobs/{job.id}", headers=alice)

    body = response.json()
    assert (body["status"], body["attempts"], body["startedAt"]) == ("Failed", 1, "2026-11-28T10:00:00Z")
    assert body["finishedAt"] == "2026-11-28T10:00:02.500000Z"
    assert body["error"] == {"code": "REPORT_QUERY_FAILED", "message": "The report query failed: check the parameters"}
    assert "retry-after" not in response.headers


async def test_the_database_message_of_a_failed_job_is_shown_to_admins_only(
    client: Client, backend: Backend, alice: dict[str, str], admin: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.start(job)
    job.fail(backend.clock(), "REPORT_QUERY_FAILED", "The report query failed: ask an administrator", "secret_col")

    as_owner = (await client.get(f"/api/v1/jobs/{job.id}", headers=alice)).json()["error"]
    as_admin = (await client.get(f"/api/v1/jobs/{job.id}", headers=admin)).json()["error"]

    assert as_owner == {"code": "REPORT_QUERY_FAILED", "message": "The report query failed: ask an administrator"}
    assert as_admin == {**as_owner, "detail": "secret_col"}


@pytest.mark.parametrize("path", ["", "/result"])
async def test_another_users_job_is_404_but_an_admin_sees_it(
    client: Client, backend: Backend, bob: dict[str, str], admin: dict[str, str], path: str
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    as_bob = await client.get(f"/api/v1/jobs/{job.id}{path}", headers=bob)
    as_admin = await client.get(f"/api/v1/jobs/{job.id}{path}", headers=admin)

    assert as_bob.status_code == 404
    assert as_bob.json()["type"] == "urn:reportgen:problem:job-not-found"
    assert as_admin.status_code == 200


@pytest.mark.parametrize("path", ["", "/result"])
async def test_unknown_job_is_404_and_a_non_uuid_job_id_is_400(
    client: Client, alice: dict[str, str], path: str
) -> None:
    unknown = await client.get(f"/api/v1/jobs/{UNKNOWN_ID}{path}", headers=alice)
    malformed = await client.get(f"/api/v1/jobs/{NOT_A_UUID}{path}", headers=alice)

    assert unknown.status_code == 404
    assert malformed.status_code == 400
    assert malformed.json()["errors"] == [{"field": "jobId", "message": "Invalid UUID"}]


async def test_database_down_on_status_is_503_with_retry_after(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.db.unavailable = True

    response = await client.get(f"/api/v1/jobs/{job.id}", headers=alice)

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()


async def test_result_streams_the_artifact_with_its_headers(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert response.status_code == 200
    assert response.content == CSV
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-length"] == str(len(CSV))
    assert response.headers["content-disposition"] == f'attachment; filename="{job.filename}"'
    assert response.headers["etag"] == f'"{hashlib.sha256(CSV).hexdigest()}"'


async def test_json_result_is_served_as_application_json(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice", output_format="json")
    backend.succeed(job, b'[{"region":"EU"}]')

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert response.headers["content-type"] == "application/json"
    assert response.json() == [{"region": "EU"}]
    assert response.headers["content-disposition"].endswith('.json"')


@pytest.mark.parametrize("if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
async def test_result_matching_if_none_match_is_304_without_body(
    client: Client, backend: Backend, alice: dict[str, str], if_none_match: str
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)
    etag = f'"{hashlib.sha256(CSV).hexdigest()}"'

    response = await client.get(
        f"/api/v1/jobs/{job.id}/result", headers={**alice, "If-None-Match": if_none_match.format(etag=etag)}
    )

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


async def test_result_with_a_stale_etag_is_sent_again(client: Client, backend: Backend, alice: dict[str, str]) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers={**alice, "If-None-Match": '"stale"'})

    assert response.status_code == 200
    assert response.content == CSV


async def test_result_before_success_is_409_with_the_job_status(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.start(job)

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert response.status_code == 409
    problem = response.json()
    assert (problem["type"], problem["jobStatus"]) == ("urn:reportgen:problem:result-not-ready", "Running")


async def test_result_whose_artifact_is_gone_is_410(client: Client, backend: Backend, alice: dict[str, str]) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    artifact = backend.succeed(job, CSV)
    del backend.artifacts.files[artifact.key]

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert response.status_code == 410
    assert response.json()["type"] == "urn:reportgen:problem:result-gone"


async def test_status_of_a_succeeded_job_says_when_its_result_expires(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    body = (await client.get(f"/api/v1/jobs/{job.id}", headers=alice)).json()

    assert (body["status"], body["finishedAt"]) == ("Succeeded", "2026-11-28T10:00:00Z")
    assert body["expiresAt"] == "2026-11-29T10:00:00Z"


async def test_result_past_its_retention_period_is_410_expired(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    backend.clock.advance(RESULT_TTL.total_seconds() - 1)
    before = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)
    backend.clock.advance(1)
    after = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert before.status_code == 200
    assert after.status_code == 410
    assert after.headers["content-type"] == "application/problem+json"
    assert after.json()["type"] == "urn:reportgen:problem:result-expired"


async def test_deleted_report_keeps_its_jobs_and_their_results(
    client: Client, backend: Backend, alice: dict[str, str], admin: dict[str, str]
) -> None:
    report = backend.add_report()
    job = backend.add_job(report, owner="alice")
    backend.succeed(job, CSV)

    deleted = await client.delete(f"/api/v1/reports/{report.id}", headers=admin)
    result = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert deleted.status_code == 204
    assert result.content == CSV


@pytest.mark.parametrize(
    ("byte_range", "part", "content_range"),
    [
        ("bytes=0-5", CSV[0:6], "bytes 0-5/21"),
        ("bytes=13-", CSV[13:], "bytes 13-20/21"),
        ("bytes=-4", CSV[-4:], "bytes 17-20/21"),
        ("bytes=20-1000", CSV[20:], "bytes 20-20/21"),
        ("bytes=-1000", CSV, "bytes 0-20/21"),
    ],
    ids=["first-bytes", "from-an-offset", "suffix", "past-the-end", "suffix-longer-than-the-file"],
)
async def test_a_range_of_the_result_is_a_206_with_those_bytes(
    client: Client, backend: Backend, alice: dict[str, str], byte_range: str, part: bytes, content_range: str
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers={**alice, "Range": byte_range})

    assert response.status_code == 206
    assert response.content == part
    assert response.headers["content-range"] == content_range
    assert response.headers["content-length"] == str(len(part))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "text/csv; charset=utf-8"


async def test_a_range_past_the_end_is_a_416_saying_the_size(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers={**alice, "Range": "bytes=21-"})

    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */21"
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("byte_range", ["bytes=0-1,4-5", "items=0-5", "bytes=5-2", "bytes=x-", "bytes=-"])
async def test_a_range_this_server_does_not_honour_gets_the_whole_result(
    client: Client, backend: Backend, alice: dict[str, str], byte_range: str
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers={**alice, "Range": byte_range})

    assert (response.status_code, response.content) == (200, CSV)


async def test_if_range_resumes_only_the_same_result(client: Client, backend: Backend, alice: dict[str, str]) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)
    etag = f'"{hashlib.sha256(CSV).hexdigest()}"'
    url = f"/api/v1/jobs/{job.id}/result"

    same = await client.get(url, headers={**alice, "Range": "bytes=6-", "If-Range": etag})
    other = await client.get(url, headers={**alice, "Range": "bytes=6-", "If-Range": '"another"'})
    dated = await client.get(url, headers={**alice, "Range": "bytes=6-", "If-Range": "Wed, 21 Oct 2026 07:28:00 GMT"})

    assert (same.status_code, same.content) == (206, CSV[6:])
    assert (other.status_code, other.content) == (200, CSV)
    assert (dated.status_code, dated.content) == (200, CSV)


async def test_head_answers_the_results_headers_without_a_body(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)
    url = f"/api/v1/jobs/{job.id}/result"

    whole = await client.head(url, headers=alice)
    part = await client.head(url, headers={**alice, "Range": "bytes=0-9"})
    queued = backend.add_job(backend.add_report(), owner="alice")
    not_ready = await client.head(f"/api/v1/jobs/{queued.id}/result", headers=alice)

    assert (whole.status_code, whole.content) == (200, b"")
    assert whole.headers["content-length"] == str(len(CSV))
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["etag"] == f'"{hashlib.sha256(CSV).hexdigest()}"'
    assert whole.headers["content-disposition"].endswith('.csv"')
    assert (part.status_code, part.headers["content-range"], part.headers["content-length"]) == (
        206,
        "bytes 0-9/21",
        "10",
    )
    assert (not_ready.status_code, not_ready.content) == (409, b"")
