"""Every input gets a 4xx problem, never a 500: strings the database cannot hold, numbers it cannot bind, bodies
nested too deep, arriving too slowly or cut off, paths nobody serves, and the methods each path allows."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from api.app import build_app
from api.auth import JwtSettings
from api.schemas import MAX_BODY_DEPTH
from domain.reports import ParameterType, ReportParameter
from tests.unit.api.conftest import AUDIENCE, ISSUER, SECRET, Backend, Client, dependencies

REPORTS = "/api/v1/reports"
NEW_REPORT: dict[str, Any] = {
    "name": "Orders",
    "query": "SELECT 1 AS n WHERE :region IS NOT NULL",
    "parameters": [{"name": "region", "type": "string", "required": False, "default": None}],
}


def generate_url(report_id: object) -> str:
    return f"{REPORTS}/{report_id}/generate"


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Or\x00ders"}, "name"),
        ({"description": "a\x00b"}, "description"),
        ({"query": "SELECT 1 AS n WHERE :region IS NOT NULL -- \x00"}, "query"),
        ({"parameters": [{"name": "region", "type": "string", "default": "E\x00U"}]}, "parameters[0].default"),
        ({"deliveryTarget": "API\x00RESPONSE"}, "deliveryTarget"),
    ],
    ids=["name", "description", "query", "default", "delivery-target"],
)
async def test_a_nul_character_anywhere_in_a_report_is_422_naming_the_field(
    client: Client, admin: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    response = await client.post(REPORTS, json={**NEW_REPORT, **changes}, headers=admin)

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error == {"field": field, "message": "must not contain the NUL character (U+0000)"}


@pytest.mark.parametrize(
    ("parameters", "field", "message"),
    [
        ({"region": "E\x00U"}, "parameters.region", "NUL"),
        ({"reg\x00ion": "EU"}, "parameters (a key)", "NUL"),
        ({"region": "x" * 10_001}, "parameters.region", "at most 10000 characters"),
        ({"region": "EU", "count": 2**63}, "parameters.count", "64-bit integer"),
        ({"region": "EU", "count": -(2**63) - 1}, "parameters.count", "64-bit integer"),
        ({"region": "EU", "ratio": 10**400}, "parameters.ratio", "finite number"),
    ],
    ids=["nul-value", "nul-name", "long-string", "int-too-big", "int-too-small", "number-beyond-double"],
)
async def test_a_parameter_the_database_cannot_bind_is_422_naming_it(
    client: Client, backend: Backend, alice: dict[str, str], parameters: dict[str, Any], field: str, message: str
) -> None:
    report = backend.add_report(
        query="SELECT :region AS r, :count AS c, :ratio AS x",
        parameters=(
            ReportParameter("region", ParameterType.STRING, required=True),
            ReportParameter("count", ParameterType.INTEGER),
            ReportParameter("ratio", ParameterType.NUMBER),
        ),
    )
    body = json.dumps({"parameters": parameters}).encode()

    response = await client.post(
        generate_url(report.id), content=body, headers={**alice, "Content-Type": "application/json"}
    )

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [e["field"] for e in errors if message in e["message"]] == [field]
    assert backend.db.jobs == {}


async def test_the_largest_integers_a_database_binds_are_accepted(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report(
        query="SELECT :low AS low, :high AS high",
        parameters=(ReportParameter("low", ParameterType.INTEGER), ReportParameter("high", ParameterType.INTEGER)),
    )
    body = {"parameters": {"low": -(2**63), "high": 2**63 - 1}}

    response = await client.post(generate_url(report.id), json=body, headers=alice)

    assert response.status_code == 202


async def test_a_body_nested_deeper_than_the_bound_is_400(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()
    shallow = {"parameters": {"region": nested(MAX_BODY_DEPTH - 3)}}
    deep = {"parameters": {"region": nested(MAX_BODY_DEPTH)}}
    very_deep = b'{"parameters": {"region": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}"

    answers = [
        await client.post(generate_url(report.id), json=shallow, headers=alice),
        await client.post(generate_url(report.id), json=deep, headers=alice),
        await client.post(
            generate_url(report.id), content=very_deep, headers={**alice, "Content-Type": "application/json"}
        ),
    ]

    assert [r.status_code for r in answers] == [422, 400, 400], "shallow enough: refused for its type only"
    assert "deeper than 32 levels" in answers[1].json()["detail"]
    assert all(r.headers["content-type"] == "application/problem+json" for r in answers)


async def test_a_user_id_with_a_control_character_in_the_path_is_400(client: Client, admin: dict[str, str]) -> None:
    response = await client.get("/api/v1/users/al%00ice/job-limit", headers=admin)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "userId"


@pytest.mark.parametrize("path", ["/schema/nope", "/schema/openapi.json/x", "/nope", "/api/v2/reports"])
async def test_every_unknown_path_is_a_404_problem(client: Client, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["instance"] == path


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (REPORTS, "GET, OPTIONS, POST"),
        (f"{REPORTS}/00000000-0000-4000-8000-000000000001", "DELETE, GET, OPTIONS, PUT"),
        (generate_url("00000000-0000-4000-8000-000000000001"), "OPTIONS, POST"),
        ("/api/v1/jobs/00000000-0000-4000-8000-000000000001", "GET, OPTIONS"),
        ("/api/v1/users/alice/job-limit", "GET, OPTIONS, PUT"),
    ],
)
async def test_options_and_a_wrong_method_list_every_method_of_the_path(
    client: Client, admin: dict[str, str], path: str, allowed: str
) -> None:
    options = await client.options(path, headers=admin)
    wrong = await client.patch(path, headers=admin)

    assert (options.status_code, options.headers["allow"]) == (204, allowed)
    assert wrong.status_code == 405
    assert sorted(wrong.headers["allow"].split(", ")) == allowed.split(", ")


Receive = Callable[[], Awaitable[dict[str, Any]]]


async def call(
    receive: Receive, backend: Backend, alice: dict[str, str], body_seconds: float = 0.2
) -> list[dict[str, Any]]:
    """POST generate straight through the ASGI app with `receive` as the client; the messages it sent back."""
    deps = dependencies(backend, JwtSettings(secret=SECRET, issuer=ISSUER, audience=AUDIENCE))
    app = build_app(replace(deps, body_timeout_seconds=body_seconds))
    report = backend.add_report()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    headers += [(k.lower().encode(), v.encode()) for k, v in alice.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": generate_url(report.id),
        "raw_path": generate_url(report.id).encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


async def test_a_body_that_does_not_arrive_in_time_is_408(backend: Backend, alice: dict[str, str]) -> None:
    parts: list[dict[str, Any]] = [{"type": "http.request", "body": b'{"parameters": ', "more_body": True}]

    async def slow_client() -> dict[str, Any]:
        if parts:
            return parts.pop()
        await asyncio.sleep(60)  # the rest never comes
        raise AssertionError("not reached")

    sent = await asyncio.wait_for(call(slow_client, backend, alice), timeout=10)

    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["detail"] == "The request body did not arrive within 0.2 s."
    assert backend.db.jobs == {}


async def test_a_client_that_leaves_mid_body_is_a_400_and_no_error_is_logged(
    backend: Backend, alice: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    messages: list[dict[str, Any]] = [
        {"type": "http.disconnect"},
        {"type": "http.request", "body": b'{"param', "more_body": True},
    ]

    async def leaving_client() -> dict[str, Any]:
        return messages.pop()

    sent = await call(leaving_client, backend, alice)

    assert sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert backend.db.jobs == {}
