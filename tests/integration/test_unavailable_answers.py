"""A 503 of the real persistence adapters says why: a pool whose every connection stays busy is told apart from a
database that refuses connections, on the hot paths (driver connection) and in the unit of work alike."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import issue_token
from api.unavailable import UNAVAILABLE_LOGGER
from bootstrap.container import build_container
from infrastructure.persistence.engine import create_engine
from settings import Settings
from tests.integration.api_helpers import AUTH, SECRET, api_client

pytestmark = pytest.mark.integration

REFUSING_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/reportgen"  # nothing listens on port 1
ROUTES = [  # through a unit of work; a statement on a driver connection (PostgreSQL's hot path)
    pytest.param("/api/v1/reports", id="unit-of-work"),
    pytest.param(f"/api/v1/jobs/{UUID(int=1)}", id="driver"),
]


async def answer(engine: AsyncEngine, path: str, tmp_path: Path) -> tuple[int, CollectorRegistry]:
    """The status of `GET path` from the API wired as in production on `engine`, and its metrics."""
    settings = Settings(database_url=str(engine.url), jwt_secret=SECRET, var_dir=tmp_path, artifact_dir=tmp_path)
    return await answer_of(settings, path, engine=engine)


async def answer_of(settings: Settings, path: str, **overrides: object) -> tuple[int, CollectorRegistry]:
    """The status of `GET path` from the API wired as in production for `settings`, and its metrics."""
    container = build_container(settings, registry=CollectorRegistry(), **overrides)
    headers = {"Authorization": f"Bearer {issue_token(AUTH, 'alice')}", "X-Request-ID": "req-503"}
    try:
        async with api_client(container) as client:
            response = await client.get(path, headers=headers)
    finally:
        if "engine" in overrides:  # the engine passed in is its fixture's to close
            await container.reporting_engine.dispose()
        else:
            await container.aclose()
    return response.status_code, container.registry


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


@pytest.mark.parametrize("path", ROUTES)
async def test_a_request_that_waits_for_a_lock_held_elsewhere_is_a_503_at_the_lock_timeout(
    pg_url: str, path: str, tmp_path: Path, warnings: pytest.LogCaptureFixture
) -> None:
    """Whatever holds a lock the service needs (a migration, an operator's session, a report on a database that
    lets it), a request waits `database_lock_timeout_seconds` for it, not for ever, and its connection comes back."""
    settings = Settings(
        database_url=pg_url,
        jwt_secret=SECRET,
        var_dir=tmp_path,
        artifact_dir=tmp_path,
        database_lock_timeout_seconds=0.2,
    )
    holder = create_engine(pg_url)
    try:
        async with holder.begin() as conn:
            await conn.execute(sa.text("LOCK TABLE reports, jobs IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            status, registry = await answer_of(settings, path)
            waited = time.monotonic() - started
        after, _ = await answer_of(settings, path)
    finally:
        await holder.dispose()

    assert status == 503
    assert waited < 5, "the lock timeout, not the pool's or the client's, ended the wait"
    assert causes_logged(warnings) == [("database_timeout", "req-503")]
    assert (unavailable_total(registry, "database_timeout"), unavailable_total(registry, "database")) == (1, 0)
    assert after in (200, 404), "the lock released, the same request is answered"


async def test_every_connection_of_the_service_has_a_lock_statement_and_idle_transaction_timeout(
    pg_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=pg_url,
        jwt_secret=SECRET,
        var_dir=tmp_path,
        database_lock_timeout_seconds=1.5,
        database_statement_timeout_seconds=7,
    )
    container = build_container(settings, registry=CollectorRegistry())
    try:
        async with container.engine.connect() as conn:
            row = (await conn.execute(sa.text(TIMEOUTS))).one()
        async with container.reporting_engine.connect() as conn:
            reporting = (await conn.execute(sa.text(TIMEOUTS))).one()
    finally:
        await container.aclose()

    assert tuple(row) == ("1500ms", "7s", "7s", "reportgen")
    assert tuple(reporting) == ("0", "0", "0", "reportgen-reports"), "a report's own time limit bounds it"


TIMEOUTS = """SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),
current_setting('idle_in_transaction_session_timeout'), current_setting('application_name')"""
