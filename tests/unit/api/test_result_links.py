"""Downloads from object storage: a 303 to the store's presigned URL (REPORTGEN_RESULT_DELIVERY=redirect), and a 503
when the store is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from litestar.testing import AsyncTestClient

from api.app import build_app
from api.auth import JwtSettings
from tests.unit.api.conftest import RESULT_TTL, Backend, Client, dependencies

CSV = b"region,total\r\nEU,12\r\n"
LINK_LIFETIME = timedelta(minutes=5)


@pytest.fixture
async def redirecting(backend: Backend, jwt_settings: JwtSettings) -> AsyncIterator[Client]:
    backend.artifacts.links = True
    app = build_app(dependencies(backend, jwt_settings, result_link_lifetime=LINK_LIFETIME))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def test_a_download_is_a_303_to_the_stores_url_valid_for_the_configured_time(
    redirecting: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    artifact = backend.succeed(job, CSV)

    response = await redirecting.get(f"/api/v1/jobs/{job.id}/result", headers=alice, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == f"https://store.example/{artifact.key}?expires=300"
    assert response.headers["cache-control"] == "no-store"
    assert response.content == b""


async def test_a_link_never_outlives_the_result(redirecting: Client, backend: Backend, alice: dict[str, str]) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    artifact = backend.succeed(job, CSV)
    backend.clock.advance((RESULT_TTL - timedelta(seconds=42)).total_seconds())

    response = await redirecting.get(f"/api/v1/jobs/{job.id}/result", headers=alice, follow_redirects=False)

    assert response.headers["location"] == f"https://store.example/{artifact.key}?expires=42"


async def test_a_ranged_download_is_redirected_too_and_head_and_304_are_answered_here(
    redirecting: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)
    url = f"/api/v1/jobs/{job.id}/result"

    ranged = await redirecting.get(url, headers={**alice, "Range": "bytes=0-5"}, follow_redirects=False)
    head = await redirecting.head(url, headers=alice, follow_redirects=False)
    current = await redirecting.get(url, headers={**alice, "If-None-Match": head.headers["etag"]})

    assert ranged.status_code == 303
    assert (head.status_code, head.headers["content-length"]) == (200, str(len(CSV)))
    assert current.status_code == 304


async def test_results_gone_or_not_ready_are_not_redirected(
    redirecting: Client, backend: Backend, alice: dict[str, str]
) -> None:
    gone = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(gone, CSV)
    backend.artifacts.files.clear()
    queued = backend.add_job(backend.add_report(), owner="alice")

    assert (await redirecting.get(f"/api/v1/jobs/{gone.id}/result", headers=alice)).status_code == 410
    assert (await redirecting.get(f"/api/v1/jobs/{queued.id}/result", headers=alice)).status_code == 409


async def test_a_store_without_links_streams_the_result(
    backend: Backend, jwt_settings: JwtSettings, alice: dict[str, str]
) -> None:
    app = build_app(dependencies(backend, jwt_settings, result_link_lifetime=LINK_LIFETIME))
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)

    async with AsyncTestClient(app=app) as client:
        response = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert (response.status_code, response.content) == (200, CSV)


async def test_the_store_down_is_a_503_with_retry_after_not_a_410(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job = backend.add_job(backend.add_report(), owner="alice")
    backend.succeed(job, CSV)
    backend.artifacts.unavailable = True

    response = await client.get(f"/api/v1/jobs/{job.id}/result", headers=alice)

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["type"] == "urn:reportgen:problem:artifact-store-unavailable"
    assert "down" not in response.text
