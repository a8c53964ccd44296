"""Request ids, access logs, problem responses for framework errors and unexpected failures, and the lifespan."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from uuid import RFC_4122, UUID

import pytest
import structlog
from litestar.testing import AsyncTestClient
from structlog.contextvars import merge_contextvars

from api.app import build_app
from api.auth import JwtSettings
from api.middleware import new_request_id
from application.job_queries import GetJobStatus
from application.ports import JobPosition, JobReader, JobSelection
from domain.jobs import JobExecutionLog
from tests.unit.api.conftest import UNKNOWN_ID, Backend, Client, dependencies

LEAKY_MESSAGE = "SELECT secret FROM vault WHERE password = 'hunter2'"


class ExplodingJobReader(JobReader):
    async def get(self, job_id: UUID) -> JobExecutionLog | None:
        raise RuntimeError(LEAKY_MESSAGE)

    async def list(
        self, selection: JobSelection, limit: int, after: JobPosition | None = None
    ) -> list[JobExecutionLog]:
        raise RuntimeError(LEAKY_MESSAGE)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health/live", 200),
        ("GET", "/api/v1/reports", 401),
        ("GET", "/no/such/route", 404),
        ("PATCH", "/api/v1/reports", 405),
    ],
)
async def test_every_response_carries_a_request_id(client: Client, method: str, path: str, status: int) -> None:
    response = await client.request(method, path)

    assert response.status_code == status
    assert UUID(response.headers["x-request-id"]).version == 4


async def test_framework_errors_are_problems_naming_the_request(client: Client) -> None:
    response = await client.request("PATCH", "/api/v1/reports", headers={"X-Request-ID": "trace-1"})

    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank", "title": "Method Not Allowed", "status": 405, "detail": "Method Not Allowed",
        "instance": "/api/v1/reports", "requestId": "trace-1",
    }  # fmt: skip


@pytest.mark.parametrize("sane", ["abc", "0f3c9a2e-77b1-4f7e-9a57-3b1a4c2d9e10", "a.b_c:d-e", "x" * 128])
async def test_sane_caller_request_id_is_echoed(client: Client, sane: str) -> None:
    response = await client.get("/no/such/route", headers={"X-Request-ID": sane})

    assert response.headers["x-request-id"] == sane
    assert response.json()["requestId"] == sane


@pytest.mark.parametrize("insane", ["", "has space", "x" * 129, "semi;colon", "new\\nline"])
async def test_insane_caller_request_id_is_replaced(client: Client, insane: str) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": insane})

    assert response.headers["x-request-id"] != insane
    assert UUID(response.headers["x-request-id"]).version == 4


def test_a_new_request_id_is_the_text_of_the_version_4_uuid_of_the_same_random_bits() -> None:
    state = random.getstate()  # the process's generator: the seeds below must not stay behind for other tests
    try:
        for seed in range(2_000):
            random.seed(seed)
            request_id = new_request_id()
            random.seed(seed)
            expected = UUID(int=random.getrandbits(128), version=4)

            assert request_id == str(expected)
            assert (UUID(request_id).version, UUID(request_id).variant) == (4, RFC_4122)
    finally:
        random.setstate(state)


async def test_generated_request_ids_differ(client: Client) -> None:
    ids = {(await client.get("/health/live")).headers["x-request-id"] for _ in range(3)}

    assert len(ids) == 3


@pytest.mark.parametrize("debug", [False, True])
async def test_unexpected_exception_is_a_generic_500_problem_logged_with_its_traceback(
    backend: Backend, jwt_settings: JwtSettings, alice: dict[str, str], debug: bool
) -> None:
    deps = dependencies(backend, jwt_settings, get_status=GetJobStatus(ExplodingJobReader()), debug=debug)
    async with AsyncTestClient(app=build_app(deps)) as client:
        with structlog.testing.capture_logs() as logs:
            response = await client.get(f"/api/v1/jobs/{UNKNOWN_ID}", headers=alice)

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["title"], problem["requestId"]) == ("Internal Server Error", response.headers["x-request-id"])
    for leak in (LEAKY_MESSAGE, "hunter2", "Traceback", "RuntimeError", "ExplodingJobReader"):
        assert leak not in response.text
    [logged] = [entry for entry in logs if entry["event"] == "unhandled_exception"]
    assert isinstance(logged["exc_info"], RuntimeError)


async def test_one_access_log_line_per_request_without_the_token(
    client: Client, alice: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with structlog.testing.capture_logs(processors=[merge_contextvars]) as logs:
        response = await client.get(f"/api/v1/jobs/{UNKNOWN_ID}", headers={**alice, "X-Request-ID": "req-7"})

    [line] = [entry for entry in logs if entry["event"] == "http_request"]
    assert {k: line[k] for k in ("method", "route", "status", "request_id", "user_id")} == {
        "method": "GET", "route": "/api/v1/jobs/{jobId}", "status": 404, "request_id": "req-7", "user_id": "alice",
    }  # fmt: skip
    assert line["duration_ms"] >= 0
    token = alice["Authorization"].removeprefix("Bearer ")
    assert all(token not in repr(entry) for entry in logs)
    assert response.status_code == 404


async def test_no_access_log_line_is_built_below_its_level(
    client: Client, alice: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with structlog.testing.capture_logs() as logs:  # captures whatever is logged, whatever the level
        response = await client.get(f"/api/v1/jobs/{UNKNOWN_ID}", headers=alice)

    assert response.status_code == 404
    assert not [entry for entry in logs if entry["event"] == "http_request"]


async def test_lifespan_factories_open_in_order_and_close_in_reverse(
    backend: Backend, jwt_settings: JwtSettings
) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def resource(name: str) -> AsyncIterator[None]:
        events.append(f"open {name}")
        yield
        events.append(f"close {name}")

    def container() -> AbstractAsyncContextManager[None]:
        return resource("container")

    def worker() -> AbstractAsyncContextManager[None]:
        return resource("worker")

    async with AsyncTestClient(app=build_app(dependencies(backend, jwt_settings, lifespan=[container, worker]))):
        events.append("serving")

    assert events == ["open container", "open worker", "serving", "close worker", "close container"]
