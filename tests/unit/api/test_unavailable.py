"""Every 503 says why: counted by cause, and each cause logged at WARNING with the request id, at most once every
few seconds (with how many went unlogged), so that an outage is visible without flooding the log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar.exceptions import ServiceUnavailableException
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry, Counter

from api.app import build_app
from api.auth import JwtSettings
from api.unavailable import (
    UNAVAILABLE_CAUSES,
    UNAVAILABLE_LOGGER,
    UnavailableAnswers,
    UnavailableCause,
    cause_of,
)
from application.errors import StorageUnavailable
from tests.unit.api.conftest import Backend, Client, dependencies

FIELDS = ("cause", "reason", "error", "request_id", "unlogged_since_last")
CAUSES_OF_FAKES: tuple[UnavailableCause, ...] = ("database", "database_pool", "queue", "not_ready")


class Monotonic:
    """A monotonic clock that a test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
async def client(backend: Backend, jwt_settings: JwtSettings, monotonic: Monotonic) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=build_app(dependencies(backend, jwt_settings, monotonic=monotonic))) as client:
        yield client


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Captures the WARNING lines about 503 answers, whatever level an earlier test left on the root logger."""
    caplog.set_level(logging.WARNING, logger=UNAVAILABLE_LOGGER)
    return caplog


def lines(warnings: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of each line about 503 answers logged so far."""
    return [{k: r.__dict__[k] for k in FIELDS} for r in warnings.records if r.name == UNAVAILABLE_LOGGER]


def unavailable_total(backend: Backend, cause: str) -> float | None:
    return backend.registry.get_sample_value("reportgen_http_unavailable_total", {"cause": cause})


def fail_for(backend: Backend, cause: UnavailableCause) -> None:
    """Make the fakes fail as that cause would."""
    if cause == "database" or cause == "database_pool":
        backend.db.unavailable, backend.db.unavailable_cause = True, cause
    else:
        backend.queue.fail = True  # generate cannot hand over its job; readiness reports the queue down


async def request_for(
    client: Client, backend: Backend, cause: UnavailableCause, headers: dict[str, str]
) -> httpx.Response:
    """A request that a failure of `cause` answers with 503."""
    if cause == "queue":
        report = backend.add_report()
        url = f"/api/v1/reports/{report.id}/generate"
        return await client.post(url, json={"parameters": {"region": "EU"}}, headers=headers)
    if cause == "not_ready":
        return await client.get("/health/ready", headers=headers)
    return await client.get("/api/v1/reports", headers=headers)


@pytest.mark.parametrize("cause", CAUSES_OF_FAKES)
async def test_each_cause_of_a_503_is_logged_once_with_the_request_id_and_counted_every_time(
    client: Client, backend: Backend, alice: dict[str, str], warnings: pytest.LogCaptureFixture, cause: UnavailableCause
) -> None:
    fail_for(backend, cause)

    responses = [await request_for(client, backend, cause, alice | {"X-Request-ID": f"req-{n}"}) for n in range(3)]

    assert [r.status_code for r in responses] == [503] * 3
    [line] = lines(warnings)
    assert (line["cause"], line["request_id"], line["unlogged_since_last"]) == (cause, "req-0", 0)
    assert {c: unavailable_total(backend, c) for c in UNAVAILABLE_CAUSES} == {
        c: 3.0 if c == cause else 0.0 for c in UNAVAILABLE_CAUSES
    }


async def test_the_line_gives_the_reason_of_the_503(
    client: Client, backend: Backend, alice: dict[str, str], warnings: pytest.LogCaptureFixture
) -> None:
    backend.queue.fail = True

    await request_for(client, backend, "queue", alice)
    await request_for(client, backend, "not_ready", alice)

    assert [(line["cause"], line["reason"]) for line in lines(warnings)] == [
        ("queue", "the fake queue is down"),
        ("not_ready", "Not answering: queue."),
    ]


async def test_a_burst_logs_once_and_the_first_line_after_the_interval_says_how_many_went_unlogged(
    client: Client, backend: Backend, alice: dict[str, str], warnings: pytest.LogCaptureFixture, monotonic: Monotonic
) -> None:
    backend.db.unavailable = True

    for n, at in enumerate((100.0, 101.0, 102.0, 104.9, 105.0)):
        monotonic.now = at
        response = await client.get("/api/v1/reports", headers=alice | {"X-Request-ID": f"req-{n}"})
        assert response.status_code == 503

    assert [(line["request_id"], line["unlogged_since_last"]) for line in lines(warnings)] == [
        ("req-0", 0),
        ("req-4", 3),
    ]
    assert unavailable_total(backend, "database") == 5


async def test_one_cause_logged_does_not_hold_back_another(
    client: Client, backend: Backend, alice: dict[str, str], warnings: pytest.LogCaptureFixture
) -> None:
    backend.db.unavailable = True

    await client.get("/api/v1/reports", headers=alice)
    await client.get("/health/ready")  # the same instant, another cause
    await client.get("/api/v1/reports", headers=alice)

    assert [line["cause"] for line in lines(warnings)] == ["database", "not_ready"]


async def test_every_cause_is_exported_at_zero_before_its_first_503(client: Client) -> None:
    metrics = (await client.get("/metrics")).text

    for cause in UNAVAILABLE_CAUSES:
        assert f'reportgen_http_unavailable_total{{cause="{cause}"}} 0.0' in metrics


def test_the_line_names_the_class_of_the_error_behind_a_503_but_never_its_message(
    warnings: pytest.LogCaptureFixture,
) -> None:
    answers = UnavailableAnswers(Counter("u", "u", ["cause"], registry=CollectorRegistry()))
    error = StorageUnavailable("the database is unavailable (ConnectionRefusedError)")
    error.__cause__ = ConnectionRefusedError("SELECT secret FROM t")

    answers.answered("req-1", error)

    [line] = lines(warnings)
    assert line["error"] == "ConnectionRefusedError"
    assert "SELECT" not in warnings.text + repr(line)


def test_a_503_of_no_known_cause_is_counted_as_other() -> None:
    assert cause_of(ServiceUnavailableException()) == "other"
