"""Per-user limits of active jobs over HTTP: admins read and set them, a user's own limit replaces the default at
generate, 0 lifts it, null returns to the default; everyone else gets 403."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from api.app import build_app
from api.auth import JwtSettings
from application.initiate_report_job import InitiateAsynchronousReportJob
from application.job_admission import UnitOfWorkAdmission
from tests.unit.api.conftest import DEFAULT_JOB_LIMIT, Backend, Client, dependencies

LIMIT_URL = "/api/v1/users/alice/job-limit"
DEFAULT = 2


@pytest.fixture
async def limited(backend: Backend, jwt_settings: JwtSettings) -> AsyncIterator[Client]:
    """An app whose users may have DEFAULT jobs Queued or Running unless an admin says otherwise."""
    uow = backend.uow
    initiate = InitiateAsynchronousReportJob(
        uow, UnitOfWorkAdmission(uow), backend.queue, backend.clock, default_limit=DEFAULT
    )
    async with AsyncTestClient(app=build_app(dependencies(backend, jwt_settings, initiate=initiate))) as client:
        yield client


async def generate(client: Client, backend: Backend, headers: dict[str, str], times: int) -> list[int]:
    report = backend.add_report()
    url = f"/api/v1/reports/{report.id}/generate"
    return [
        (await client.post(url, json={"parameters": {"region": "EU"}}, headers=headers)).status_code
        for _ in range(times)
    ]


async def test_a_user_without_a_limit_of_their_own_follows_the_default(client: Client, admin: dict[str, str]) -> None:
    response = await client.get(LIMIT_URL, headers=admin)

    assert response.status_code == 200
    assert response.json() == {
        "userId": "alice",
        "maxActiveJobs": None,
        "defaultMaxActiveJobs": DEFAULT_JOB_LIMIT,
        "activeJobs": 0,
    }


async def test_a_limit_of_their_own_replaces_the_default_and_counts_the_jobs_in_flight(
    limited: Client, backend: Backend, admin: dict[str, str], alice: dict[str, str]
) -> None:
    set_limit = await limited.put(LIMIT_URL, json={"maxActiveJobs": 3}, headers=admin)
    statuses = await generate(limited, backend, alice, 4)
    read = await limited.get(LIMIT_URL, headers=admin)

    assert set_limit.status_code == 200
    assert set_limit.json()["maxActiveJobs"] == 3
    assert statuses == [202, 202, 202, 429]
    assert (read.json()["maxActiveJobs"], read.json()["activeJobs"]) == (3, 3)


async def test_zero_lifts_the_limit_and_null_returns_to_the_default(
    limited: Client, backend: Backend, admin: dict[str, str], alice: dict[str, str]
) -> None:
    await limited.put(LIMIT_URL, json={"maxActiveJobs": 0}, headers=admin)
    unlimited = await generate(limited, backend, alice, DEFAULT + 3)
    reset = await limited.put(LIMIT_URL, json={"maxActiveJobs": None}, headers=admin)
    after_reset = await generate(limited, backend, alice, 1)

    assert unlimited == [202] * (DEFAULT + 3)
    assert reset.json()["maxActiveJobs"] is None
    assert after_reset == [429]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"maxActiveJobs": -1}, 422, "maxActiveJobs"),
        ({"maxActiveJobs": 1_000_001}, 422, "maxActiveJobs"),
        ({"maxActiveJobs": "5"}, 422, "maxActiveJobs"),
        ({"maxActiveJobs": 5, "other": 1}, 422, "other"),
        ({}, 422, "maxActiveJobs"),
    ],
    ids=["negative", "too-large", "string", "unknown-field", "missing"],
)
async def test_an_invalid_limit_is_422_naming_the_field(
    client: Client, admin: dict[str, str], body: dict[str, object], status: int, field: str
) -> None:
    response = await client.put(LIMIT_URL, json=body, headers=admin)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == [field]


async def test_only_admins_read_or_set_limits(client: Client, alice: dict[str, str]) -> None:
    read = await client.get(LIMIT_URL, headers=alice)
    written = await client.put(LIMIT_URL, json={"maxActiveJobs": 0}, headers=alice)
    anonymous = await client.get(LIMIT_URL)

    assert (read.status_code, written.status_code, anonymous.status_code) == (403, 403, 401)
