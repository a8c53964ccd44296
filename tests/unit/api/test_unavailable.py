"""Every 503 says why: counted by cause, and each cause logged at WARNING with the request id, at most once every
few seconds (with how many went unlogged), so that an outage is visible without flooding the log."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from api.errors import UnavailableAnswers
from application.errors import QueueUnavailable, StorageUnavailable
from tests.unit.api.conftest import Backend, Client


def unavailable_total(backend: Backend, cause: str) -> float:
    return backend.registry.get_sample_value("reportgen_http_unavailable_total", {"cause": cause}) or 0.0


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "api.unavailable" and r.levelno == logging.WARNING]


async def test_a_503_of_the_database_is_counted_and_logged_with_its_request_id(
    client: Client, backend: Backend, alice: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    backend.db.unavailable = True

    response = await client.get("/api/v1/reports", headers=alice | {"X-Request-ID": "req-503"})

    assert response.status_code == 503
    [line] = warnings_of(caplog)
    assert (line.cause, line.request_id, line.unlogged_since_last) == ("database", "req-503", 0)  # type: ignore[attr-defined]
    assert line.reason == "the fake database is down"  # type: ignore[attr-defined]
    assert unavailable_total(backend, "database") == 1


async def test_a_burst_of_503s_logs_once_and_counts_every_one(
    client: Client, backend: Backend, alice: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    backend.db.unavailable = True

    statuses = [(await client.get("/api/v1/reports", headers=alice)).status_code for _ in range(5)]

    assert statuses == [503] * 5
    assert len(warnings_of(caplog)) == 1
    assert unavailable_total(backend, "database") == 5


async def test_the_queue_and_readiness_are_causes_of_their_own(
    client: Client, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.queue.fail = True

    ready = await client.get("/health/ready")

    assert ready.status_code == 503
    assert [line.cause for line in warnings_of(caplog)] == ["not_ready"]  # type: ignore[attr-defined]
    assert unavailable_total(backend, "not_ready") == 1


def test_each_cause_is_logged_again_after_the_interval_with_the_count_it_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    answers = UnavailableAnswers(
        Counter("u", "u", ["cause"], registry=CollectorRegistry()), every=5, clock=lambda: now[0]
    )
    pool = StorageUnavailable("every database connection of the pool is busy", cause="database_pool")

    for at in (100.0, 101.0, 102.0, 104.9):
        now[0] = at
        answers.answered("r1", pool)
    answers.answered("r2", QueueUnavailable("Redis did not take job x: ConnectionError"))  # another cause: logged
    now[0] = 105.0
    answers.answered("r3", pool)

    lines = [(r.cause, r.request_id, r.unlogged_since_last) for r in warnings_of(caplog)]  # type: ignore[attr-defined]
    assert lines == [("database_pool", "r1", 0), ("queue", "r2", 0), ("database_pool", "r3", 3)]


def test_the_log_names_the_error_class_behind_a_503_but_never_its_message() -> None:
    try:
        try:
            raise ConnectionRefusedError("SELECT secret FROM t")
        except ConnectionRefusedError as driver_error:
            raise StorageUnavailable("the database is unavailable (ConnectionRefusedError)") from driver_error
    except StorageUnavailable as exc:
        error = exc

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("api.unavailable")
    logger.addHandler(handler)
    try:
        UnavailableAnswers(Counter("v", "v", ["cause"], registry=CollectorRegistry())).answered("r", error)
    finally:
        logger.removeHandler(handler)

    [record] = records
    assert record.error == "ConnectionRefusedError"  # type: ignore[attr-defined]
    assert "SELECT" not in record.getMessage() + str(record.__dict__)
