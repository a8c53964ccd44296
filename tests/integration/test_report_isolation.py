"""A report cannot hurt the service that runs it: it runs on a pool of its own even when the reporting database is
the service's, and what it takes (an advisory lock, locks on the service's tables) neither slows the requests of
its user while it runs nor outlives it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from api.auth import issue_token
from application.run_report_job import Outcome
from bootstrap.container import Container, build_container
from infrastructure.persistence.engine import create_engine
from settings import Settings
from tests.integration.api_helpers import AUTH, SECRET, api_client

pytestmark = pytest.mark.integration

LOCK_KEY = 7_001
# Takes a session-level advisory lock it never releases, reads the service's own tables (so holds locks on them)
# and keeps all of it for a while.
GREEDY_REPORT = {
    "name": "Greedy",
    "description": "takes and keeps a lock",
    "query": (
        f"SELECT pg_advisory_lock({LOCK_KEY}) IS NULL AS locked, (SELECT count(*) FROM jobs) AS jobs,"
        " (SELECT count(*) FROM job_owners) AS owners, pg_sleep(:seconds) IS NULL AS slept"
    ),
    "parameters": [{"name": "seconds", "type": "number", "required": True, "default": None}],
    "formats": ["csv"],
    "deliveryTarget": "API_RESPONSE",
    "asyncEnabled": True,
}


@dataclass
class Service:
    container: Container
    client: httpx.AsyncClient
    admin: dict[str, str]
    alice: dict[str, str]


@pytest.fixture
async def service(pg_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    """The API wired as in production on PostgreSQL, the reporting database being the service's own (the default);
    jobs run when the test says so."""
    settings = Settings(database_url=pg_url, jwt_secret=SECRET, var_dir=tmp_path, artifact_dir=tmp_path / "a")
    container = build_container(settings, registry=CollectorRegistry())
    admin = {"Authorization": f"Bearer {issue_token(AUTH, 'root', ['admin'])}"}
    alice = {"Authorization": f"Bearer {issue_token(AUTH, 'alice-isolation')}"}
    try:
        async with api_client(container) as client:
            yield Service(container, client, admin, alice)
    finally:
        await container.aclose()


async def generate(service: Service, report_id: str, seconds: float) -> tuple[int, float, str]:
    """POST generate as alice: the status, how long it took, and the job id."""
    started = time.monotonic()
    body = {"parameters": {"seconds": seconds}}
    response = await service.client.post(f"/api/v1/reports/{report_id}/generate", json=body, headers=service.alice)
    return response.status_code, time.monotonic() - started, response.json().get("jobId", "")


async def backends_of(pg_url: str, application_name: str) -> int:
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND state = 'active'")
            return int(await conn.scalar(query, {"name": application_name}) or 0)
    finally:
        await engine.dispose()


async def lock_is_free(pg_url: str) -> bool:
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            taken = bool(await conn.scalar(sa.text(f"SELECT pg_try_advisory_lock({LOCK_KEY})")))
            await conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            return taken
    finally:
        await engine.dispose()


async def test_a_report_that_takes_and_keeps_a_lock_leaves_generate_for_its_user_answering_at_once(
    service: Service, pg_url: str
) -> None:
    created = await service.client.post("/api/v1/reports", json=GREEDY_REPORT, headers=service.admin)
    report_id = created.json()["id"]
    status, _, job_id = await generate(service, report_id, seconds=2)
    assert status == 202

    running = asyncio.ensure_future(service.container.run_job(UUID(job_id)))
    for _ in range(100):  # until the report runs, holding its lock
        if await backends_of(pg_url, "reportgen-reports"):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the report never ran on a connection of the reporting pool")
    during = await asyncio.gather(*(generate(service, report_id, seconds=0) for _ in range(3)))
    result = await running
    after = await generate(service, report_id, seconds=0)

    assert result.outcome is Outcome.SUCCEEDED
    assert [(code, elapsed < 1) for code, elapsed, _ in [*during, after]] == [(202, True)] * 4
    assert await lock_is_free(pg_url), "the report's session-level lock ended with the report"
