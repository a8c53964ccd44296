"""Generate under the client controls: Idempotency-Key replays and the per-user limit of active jobs (429)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient

from api.app import build_app
from api.auth import JwtSettings
from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob, JobInitiated
from application.job_admission import UnitOfWorkAdmission
from domain.errors import DuplicateIdempotencyKey
from domain.reports import ReportConfiguration
from tests.unit.api.conftest import POLL_AFTER_SECONDS, Backend, Client, dependencies

EU = {"parameters": {"region": "EU"}}
MAX_ACTIVE_JOBS = 2


def generate_url(report: ReportConfiguration) -> str:
    return f"/api/v1/reports/{report.id}/generate"


def keyed(headers: dict[str, str], key: str | bytes) -> dict[str, Any]:
    return {**headers, "Idempotency-Key": key}


async def test_same_key_and_body_replays_the_first_job_with_a_replay_header(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()

    first = await client.post(generate_url(report), json=EU, headers=keyed(alice, "order-42"))
    again = await client.post(generate_url(report), json=EU, headers=keyed(alice, "order-42"))

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert (again.headers["location"], again.headers["retry-after"]) == (
        first.headers["location"],
        str(POLL_AFTER_SECONDS),
    )
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert list(backend.db.jobs) == [UUID(first.json()["jobId"])]
    assert backend.queue.enqueued == [UUID(first.json()["jobId"])]
    assert backend.registry.get_sample_value("reportgen_jobs_submitted_total") == 1.0


async def test_same_key_with_another_body_is_422_naming_the_header(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()
    await client.post(generate_url(report), json=EU, headers=keyed(alice, "order-42"))

    response = await client.post(
        generate_url(report), json={"parameters": {"region": "US"}}, headers=keyed(alice, "order-42")
    )

    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:reportgen:problem:idempotency-key-reused"
    assert [e["field"] for e in problem["errors"]] == ["Idempotency-Key"]
    assert len(backend.db.jobs) == 1


async def test_keys_belong_to_their_user(
    client: Client, backend: Backend, alice: dict[str, str], bob: dict[str, str]
) -> None:
    report = backend.add_report()

    as_alice = await client.post(generate_url(report), json=EU, headers=keyed(alice, "same-key"))
    as_bob = await client.post(generate_url(report), json=EU, headers=keyed(bob, "same-key"))

    assert as_alice.json()["jobId"] != as_bob.json()["jobId"]
    assert "idempotent-replayed" not in as_bob.headers


async def test_a_key_of_255_printable_ascii_characters_is_accepted(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    response = await client.post(generate_url(backend.add_report()), json=EU, headers=keyed(alice, "k ~" * 85))

    assert response.status_code == 202


@pytest.mark.parametrize(
    "key", [b"", b"k" * 256, "cl\u00e9".encode(), b"tab\there"], ids=["empty", "too-long", "non-ascii", "control"]
)
async def test_a_malformed_key_is_400_naming_the_header(
    client: Client, backend: Backend, alice: dict[str, str], key: bytes
) -> None:
    response = await client.post(generate_url(backend.add_report()), json=EU, headers=keyed(alice, key))

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["Idempotency-Key"]
    assert backend.db.jobs == {}


@pytest.fixture
async def limited(backend: Backend, jwt_settings: JwtSettings) -> AsyncIterator[Client]:
    """An app whose users may have at most MAX_ACTIVE_JOBS jobs Queued or Running."""
    initiate = InitiateAsynchronousReportJob(
        backend.uow, UnitOfWorkAdmission(backend.uow), backend.queue, backend.clock, default_limit=MAX_ACTIVE_JOBS
    )
    async with AsyncTestClient(app=build_app(dependencies(backend, jwt_settings, initiate=initiate))) as client:
        yield client


async def test_over_the_active_job_limit_generate_is_429_with_retry_after_until_a_job_ends(
    limited: Client, backend: Backend, alice: dict[str, str], bob: dict[str, str]
) -> None:
    report = backend.add_report()
    accepted = [await limited.post(generate_url(report), json=EU, headers=alice) for _ in range(MAX_ACTIVE_JOBS)]

    refused = await limited.post(generate_url(report), json=EU, headers=alice)
    other_user = await limited.post(generate_url(report), json=EU, headers=bob)
    await limited.post(f"/api/v1/jobs/{accepted[0].json()['jobId']}/cancel", headers=alice)
    after_cancel = await limited.post(generate_url(report), json=EU, headers=alice)

    assert [r.status_code for r in accepted] == [202] * MAX_ACTIVE_JOBS
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "5"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:reportgen:problem:too-many-active-jobs"
    assert other_user.status_code == 202
    assert after_cancel.status_code == 202


async def test_a_replay_is_answered_even_at_the_active_job_limit(
    limited: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()
    first = await limited.post(generate_url(report), json=EU, headers=keyed(alice, "k1"))
    await limited.post(generate_url(report), json=EU, headers=alice)

    again = await limited.post(generate_url(report), json=EU, headers=keyed(alice, "k1"))

    assert again.status_code == 202
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again.headers["idempotent-replayed"] == "true"


class RacingInitiate(InitiateAsynchronousReportJob):
    """A use case whose concurrent twin holds the key and has not committed a job yet."""

    async def execute(self, command: InitiateReportJob) -> JobInitiated:
        raise DuplicateIdempotencyKey(command.idempotency_key)


async def test_a_key_held_by_a_request_in_flight_is_409(
    backend: Backend, jwt_settings: JwtSettings, alice: dict[str, str]
) -> None:
    initiate = RacingInitiate(backend.uow, UnitOfWorkAdmission(backend.uow), backend.queue, backend.clock)
    app = build_app(dependencies(backend, jwt_settings, initiate=initiate))
    async with AsyncTestClient(app=app) as client:
        response = await client.post(generate_url(backend.add_report()), json=EU, headers=keyed(alice, "k1"))

    assert response.status_code == 409
    assert response.json()["type"] == "urn:reportgen:problem:idempotency-key-in-use"
