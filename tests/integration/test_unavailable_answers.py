"""A 503 of the real persistence adapters says why: a pool whose every connection stays busy is told apart from a
database that refuses connections, on the hot paths (driver connection) and in the unit of work alike."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import ApiDependencies, build_app
from api.auth import JwtSettings, issue_token
from api.unavailable import UNAVAILABLE_LOGGER
from bootstrap.container import build_container
from infrastructure.persistence.engine import create_engine
from settings import Settings

pytestmark = pytest.mark.integration

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
REFUSING_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/reportgen"  # nothing listens on port 1
ROUTES = [  # through a unit of work; a statement on a driver connection (PostgreSQL's hot path)
    pytest.param("/api/v1/reports", id="unit-of-work"),
    pytest.param(f"/api/v1/jobs/{UUID(int=1)}", id="driver"),
]


async def answer(engine: AsyncEngine, path: str, tmp_path: Path) -> tuple[int, CollectorRegistry]:
    """The status of `GET path` from the API wired as in production on `engine`, and its metrics."""
    settings = Settings(database_url=str(engine.url), jwt_secret=SECRET, var_dir=tmp_path, artifact_dir=tmp_path)
    registry = CollectorRegistry()
    container = build_container(settings, engine=engine, registry=registry)
    deps = ApiDependencies(
        use_cases=container.use_cases,
        auth=JwtSettings(secret=SECRET),
        readiness=container.readiness,
        registry=registry,
        lifespan=(),
        poll_after_seconds=1,
    )
    token = issue_token(JwtSettings(secret=SECRET), "alice")
    async with AsyncTestClient(app=build_app(deps)) as client:
        response = await client.get(path, headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-503"})
    return response.status_code, registry


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger=UNAVAILABLE_LOGGER)
    return caplog


@pytest.fixture
async def busy_pool(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool of one connection is held by the test: the next request waits 0.2 s for it."""
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with engine.connect():
            yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def refusing() -> AsyncIterator[AsyncEngine]:
    engine = create_engine(REFUSING_URL)
    yield engine
    await engine.dispose()


def causes_logged(warnings: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.__dict__["cause"], r.__dict__["request_id"]) for r in warnings.records if r.name == UNAVAILABLE_LOGGER]


def unavailable_total(registry: CollectorRegistry, cause: str) -> float | None:
    return registry.get_sample_value("reportgen_http_unavailable_total", {"cause": cause})


@pytest.mark.parametrize("path", ROUTES)
async def test_a_request_that_finds_every_pooled_connection_busy_is_a_503_of_the_pool(
    busy_pool: AsyncEngine, path: str, tmp_path: Path, warnings: pytest.LogCaptureFixture
) -> None:
    status, registry = await answer(busy_pool, path, tmp_path)

    assert status == 503
    assert causes_logged(warnings) == [("database_pool", "req-503")]
    assert (unavailable_total(registry, "database_pool"), unavailable_total(registry, "database")) == (1, 0)


@pytest.mark.parametrize("path", ROUTES)
async def test_a_request_to_a_database_that_refuses_connections_is_a_503_of_the_database(
    refusing: AsyncEngine, path: str, tmp_path: Path, warnings: pytest.LogCaptureFixture
) -> None:
    status, registry = await answer(refusing, path, tmp_path)

    assert status == 503
    assert causes_logged(warnings) == [("database", "req-503")]
    [record] = [r for r in warnings.records if r.name == UNAVAILABLE_LOGGER]
    assert record.__dict__["reason"] == "the database is unavailable (ConnectionRefusedError)"
    assert (unavailable_total(registry, "database"), unavailable_total(registry, "database_pool")) == (1, 0)
