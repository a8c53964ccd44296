"""Input that the database cannot take never reaches it, on PostgreSQL and on SQLite: each is a 4xx, the service
answers on (its pool intact), and a report's values that JSON cannot spell (NaN, infinities) become null."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from jose import jwt
from prometheus_client import CollectorRegistry

from api.auth import issue_token
from application.run_report_job import Outcome
from bootstrap.container import Container, build_container
from settings import Settings
from tests.integration.api_helpers import AUTH, SECRET, api_client

pytestmark = pytest.mark.integration

REPORTS = "/api/v1/reports"
ECHO = {
    "name": "Echo",
    "query": "SELECT :word AS word, :count AS count",
    "parameters": [
        {"name": "word", "type": "string", "required": False, "default": None},
        {"name": "count", "type": "integer", "required": False, "default": None},
    ],
    "formats": ["json", "csv"],
}
# Not-a-number and the infinities, as each database spells them.
ODD_NUMBERS = {
    "postgresql": "SELECT 'NaN'::float8 AS a, 'Infinity'::float8 AS b, '-Infinity'::numeric AS c, 1.5 AS d",
    "sqlite": "SELECT 9e999 AS a, -9e999 AS b, NULL AS c, 1.5 AS d",
}


@dataclass
class Service:
    container: Container
    client: httpx.AsyncClient
    admin: dict[str, str]
    alice: dict[str, str]


@pytest.fixture
async def service(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    settings = Settings(
        database_url=database_url, jwt_secret=SECRET, var_dir=tmp_path, artifact_dir=tmp_path / "artifacts"
    )
    container = build_container(settings, registry=CollectorRegistry())
    try:
        async with api_client(container) as client:
            yield Service(
                container,
                client,
                admin={"Authorization": f"Bearer {issue_token(AUTH, 'root', ['admin'])}"},
                alice={"Authorization": f"Bearer {issue_token(AUTH, 'alice-edge')}"},
            )
    finally:
        await container.aclose()


async def test_text_and_numbers_the_database_cannot_take_are_4xx_and_the_service_answers_on(
    service: Service,
) -> None:
    client = service.client
    created = await client.post(REPORTS, json=ECHO, headers=service.admin)
    report_id = created.json()["id"]
    generate = f"{REPORTS}/{report_id}/generate"
    surrogate_sub = jwt.encode({"sub": "\ud800", "exp": 2**40}, SECRET, algorithm="HS256")

    answers = {
        "nul-in-name": await client.post(REPORTS, json={**ECHO, "name": "E\x00cho"}, headers=service.admin),
        "nul-in-parameter": await client.post(generate, json={"parameters": {"word": "a\x00b"}}, headers=service.alice),
        "integer-beyond-64-bits": await client.post(
            generate, json={"parameters": {"count": 2**64}}, headers=service.alice
        ),
        "nul-in-user-id": await client.get("/api/v1/users/a%00b/job-limit", headers=service.admin),
        "lone-surrogate-sub": await client.get(REPORTS, headers={"Authorization": f"Bearer {surrogate_sub}"}),
    }
    ready = await client.get("/health/ready")

    assert created.status_code == 201
    assert {name: r.status_code for name, r in answers.items()} == {
        "nul-in-name": 422,
        "nul-in-parameter": 422,
        "integer-beyond-64-bits": 422,
        "nul-in-user-id": 400,
        "lone-surrogate-sub": 401,
    }
    assert ready.status_code == 200
    pool = service.container.engine.pool
    assert pool.checkedout() == 0, "no connection was lost or left behind"  # type: ignore[attr-defined]


async def test_a_json_report_with_nan_and_infinities_succeeds_with_nulls(service: Service, database_url: str) -> None:
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    odd = {**ECHO, "name": "Odd numbers", "query": ODD_NUMBERS[backend], "parameters": []}
    created = await service.client.post(REPORTS, json=odd, headers=service.admin)
    accepted = await service.client.post(
        f"{REPORTS}/{created.json()['id']}/generate", json={"format": "json"}, headers=service.admin
    )

    result = await service.container.run_job(UUID(accepted.json()["jobId"]))
    download = await service.client.get(accepted.json()["resultUrl"], headers=service.admin)

    assert result.outcome is Outcome.SUCCEEDED
    assert json.loads(download.content) == [{"a": None, "b": None, "c": None, "d": 1.5}]
