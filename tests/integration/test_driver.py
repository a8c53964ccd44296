"""The driver connections under SQLAlchemy's pool: handed back after a statement, discarded after a failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from application.errors import StorageUnavailable
from infrastructure.persistence.driver import driver_connection, run_on_driver
from infrastructure.persistence.engine import create_engine

pytestmark = pytest.mark.integration

Statement = Callable[[Any], Awaitable[Any]]


async def in_context(engine: Any, statement: Statement) -> Any:
    async with driver_connection(engine) as conn:
        return await statement(conn)


RUNNERS = {"run_on_driver": run_on_driver, "driver_connection": in_context}


def backend_pid(conn: Any) -> Awaitable[int]:
    result: Awaitable[int] = conn.fetchval("SELECT pg_backend_pid()")
    return result


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Callable[[Any, Statement], Awaitable[Any]]:
    return RUNNERS[request.param]


async def test_the_connection_goes_back_to_the_pool_after_a_statement(pg_url: str, run: Any) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        first = await run(engine, backend_pid)
        second = await run(engine, backend_pid)
    finally:
        await engine.dispose()

    assert first == second


async def test_a_failed_statement_discards_its_connection(pg_url: str, run: Any) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        first = await run(engine, backend_pid)
        with pytest.raises(asyncpg.UndefinedColumnError):  # not a connection problem: it passes unchanged
            await run(engine, lambda conn: conn.fetchval("SELECT no_such_column"))
        after = await run(engine, backend_pid)
    finally:
        await engine.dispose()

    assert after != first


async def test_a_statement_cancelled_mid_way_discards_its_connection(pg_url: str, run: Any) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        first = await run(engine, backend_pid)
        sleeping = asyncio.create_task(run(engine, lambda conn: conn.execute("SELECT pg_sleep(10)")))
        await asyncio.sleep(0.2)
        sleeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sleeping
        after = await asyncio.wait_for(run(engine, backend_pid), timeout=5)  # not stuck behind the sleep
    finally:
        await engine.dispose()

    assert after != first


async def test_an_unreachable_database_is_storage_unavailable(run: Any) -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/reportgen")
    try:
        with pytest.raises(StorageUnavailable):
            await run(engine, backend_pid)
    finally:
        await engine.dispose()
