"""GET /api/v1/jobs/{jobId}?wait=: answered when the job finishes, or when the time is up; 0-60 s, else 422."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from api.app import build_app
from api.auth import JwtSettings
from tests.unit.api.conftest import Backend, Client, dependencies


async def test_a_waiting_request_is_answered_when_another_request_cancels_the_job(
    backend: Backend, jwt_settings: JwtSettings, alice: dict[str, str]
) -> None:
    """Two requests at once, so through an ASGI transport on this loop (the test client runs one at a time)."""
    job = backend.add_job(backend.add_report(), owner="alice")
    app: Any = build_app(dependencies(backend, jwt_settings))  # httpx's annotation of an ASGI app is narrower
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as client:
        started = time.monotonic()
        waiting = asyncio.create_task(client.get(f"/api/v1/jobs/{job.id}", params={"wait": "30"}, headers=alice))
        for _ in range(500):
            if backend.signals.watches:
                break
            await asyncio.sleep(0.01)
        assert (await client.post(f"/api/v1/jobs/{job.id}/cancel", headers=alice)).status_code == 202
        response = await asyncio.wait_for(waiting, timeout=5)
    assert (response.status_code, response.json()["status"]) == (200, "Cancelled")
    assert "retry-after" not in response.headers
    assert time.monotonic() - started < 5


async def test_a_wait_that_runs_out_answers_with_the_status_and_retry_after(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    response = await client.get(f"/api/v1/jobs/{job.id}", params={"wait": "0.2"}, headers=alice)
    assert (response.status_code, response.json()["status"]) == (200, "Queued")
    assert response.headers["retry-after"] == "3"


@pytest.mark.parametrize(("wait", "status"), [("61", 422), ("-1", 422), ("nan", 422), ("soon", 400)])
async def test_a_wait_that_is_not_0_to_60_seconds_is_a_problem_naming_the_parameter(
    client: Client, backend: Backend, alice: dict[str, str], wait: str, status: int
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    response = await client.get(f"/api/v1/jobs/{job.id}", params={"wait": wait}, headers=alice)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["wait"]
