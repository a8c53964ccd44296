"""Report configurations over HTTP: CRUD, admin-only writes, `query` shown to admins only, input errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.api.conftest import NOT_A_UUID, UNKNOWN_ID, Backend, Client

NEW_REPORT: dict[str, Any] = {
    "name": "Orders",
    "description": "Orders per day",
    "query": "SELECT day, count(*) AS n FROM orders WHERE day >= :since GROUP BY day",
    "parameters": [{"name": "since", "type": "date", "required": True, "default": None}],
    "formats": ["json", "csv"],
    "deliveryTarget": "API_RESPONSE",
    "asyncEnabled": True,
}


async def test_admin_creates_a_report_and_gets_201_with_location_and_camel_case_body(
    client: Client, admin: dict[str, str]
) -> None:
    response = await client.post("/api/v1/reports", json=NEW_REPORT, headers=admin)

    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"http://testserver.local/api/v1/reports/{body['id']}"
    assert {k: body[k] for k in NEW_REPORT} == NEW_REPORT
    assert body["createdAt"] == body["updatedAt"] == "2026-11-28T10:00:00Z"
    follow = await client.get(response.headers["location"], headers=admin)
    assert follow.json() == body


async def test_minimal_report_body_takes_the_defaults(client: Client, admin: dict[str, str]) -> None:
    response = await client.post("/api/v1/reports", json={"name": "One", "query": "SELECT 1"}, headers=admin)

    assert response.status_code == 201
    body = response.json()
    assert (body["formats"], body["deliveryTarget"], body["asyncEnabled"]) == (["csv"], "API_RESPONSE", True)


async def test_non_admin_cannot_create_update_or_delete_a_report(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()

    responses = [
        await client.post("/api/v1/reports", json=NEW_REPORT, headers=alice),
        await client.put(f"/api/v1/reports/{report.id}", json=NEW_REPORT, headers=alice),
        await client.delete(f"/api/v1/reports/{report.id}", headers=alice),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert all(r.headers["content-type"] == "application/problem+json" for r in responses)
    assert backend.db.reports[report.id].name == "Sales by region"
    assert len(backend.db.reports) == 1


async def test_users_read_reports_without_their_query_and_admins_with_it(
    client: Client, backend: Backend, alice: dict[str, str], admin: dict[str, str]
) -> None:
    report = backend.add_report()

    as_user = (await client.get("/api/v1/reports", headers=alice)).json()
    as_admin = (await client.get("/api/v1/reports", headers=admin)).json()
    one_as_user = (await client.get(f"/api/v1/reports/{report.id}", headers=alice)).json()

    assert [r["id"] for r in as_user] == [str(report.id)]
    assert "query" not in as_user[0]
    assert "query" not in one_as_user
    assert as_admin[0]["query"] == report.query
    assert as_user[0]["parameters"] == [
        {"name": "region", "type": "string", "required": True, "default": None},
        {"name": "since", "type": "date", "required": False, "default": "2026-01-01"},
    ]


async def test_admin_replaces_a_report_with_put(client: Client, backend: Backend, admin: dict[str, str]) -> None:
    report = backend.add_report()
    backend.clock.advance(60)

    response = await client.put(f"/api/v1/reports/{report.id}", json=NEW_REPORT, headers=admin)

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["name"], body["createdAt"]) == (str(report.id), "Orders", "2026-11-28T10:00:00Z")
    assert body["updatedAt"] == "2026-11-28T10:01:00Z"
    assert backend.db.reports[report.id].name == "Orders"


async def test_deleted_report_answers_204_then_404(client: Client, backend: Backend, admin: dict[str, str]) -> None:
    report = backend.add_report()

    deleted = await client.delete(f"/api/v1/reports/{report.id}", headers=admin)
    after = await client.get(f"/api/v1/reports/{report.id}", headers=admin)

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert after.status_code == 404
    assert after.json()["type"] == "urn:reportgen:problem:report-not-found"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_unknown_report_is_404(client: Client, admin: dict[str, str], method: str) -> None:
    response = await client.request(method, f"/api/v1/reports/{UNKNOWN_ID}", json=NEW_REPORT, headers=admin)

    assert response.status_code == 404
    assert response.json()["instance"] == f"/api/v1/reports/{UNKNOWN_ID}"


async def test_report_id_that_is_not_a_uuid_is_400_naming_the_parameter(client: Client, admin: dict[str, str]) -> None:
    response = await client.get(f"/api/v1/reports/{NOT_A_UUID}", headers=admin)

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "reportId", "message": "Invalid UUID"}]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"formats": ["docx"]}, "formats"),
        ({"query": "DELETE FROM orders"}, "query"),
        ({"parameters": [{"name": "since", "type": "duration"}]}, "parameters[0].type"),
        ({"parameters": [{"name": "since", "type": "date", "default": "yesterday"}]}, "parameters[0].default"),
        ({"asyncEnabled": "true"}, "asyncEnabled"),
        ({"owner": "me"}, "owner"),
        ({"name": None}, "name"),
    ],
)
async def test_invalid_report_definition_is_422_naming_the_field(
    client: Client, admin: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/reports", json={**NEW_REPORT, **changes}, headers=admin)

    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:reportgen:problem:invalid-input"
    assert field in [e["field"] for e in problem["errors"]]
    assert field in problem["detail"]


async def test_report_body_missing_a_required_key_is_422(client: Client, admin: dict[str, str]) -> None:
    response = await client.post("/api/v1/reports", json={"name": "No query"}, headers=admin)

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "query", "message": "Object missing required field `query`"}]


async def test_missing_report_body_is_400(client: Client, admin: dict[str, str]) -> None:
    response = await client.post("/api/v1/reports", headers=admin)

    assert response.status_code == 400
    assert response.json()["detail"] == "The request needs a JSON body."


async def test_report_body_that_is_not_json_is_400(client: Client, admin: dict[str, str]) -> None:
    response = await client.post("/api/v1/reports", content=b"{name: Orders}", headers=admin)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "not valid JSON" in response.json()["detail"]


async def test_huge_body_is_413(client: Client, admin: dict[str, str]) -> None:
    huge = {**NEW_REPORT, "description": "x" * (100 * 1024)}

    response = await client.post("/api/v1/reports", json=huge, headers=admin)

    assert response.status_code == 413
    assert response.json()["title"] == "Request Entity Too Large"


async def test_a_report_keeps_its_chart_and_csv_formula_escape(client: Client, admin: dict[str, str]) -> None:
    chart = {"type": "bar", "x": "day", "y": ["n"]}
    body = {**NEW_REPORT, "formats": ["pdf", "csv"], "chart": chart, "csvFormulaEscape": True}

    created = await client.post("/api/v1/reports", json=body, headers=admin)
    minimal = await client.post("/api/v1/reports", json={"name": "One", "query": "SELECT 1"}, headers=admin)

    assert created.status_code == 201, created.text
    assert (created.json()["chart"], created.json()["csvFormulaEscape"]) == (chart, True)
    fetched = await client.get(created.headers["location"], headers=admin)
    assert (fetched.json()["chart"], fetched.json()["csvFormulaEscape"]) == (chart, True)
    assert (minimal.json()["chart"], minimal.json()["csvFormulaEscape"]) == (None, False)


@pytest.mark.parametrize(
    ("chart", "field"),
    [
        ({"type": "pie", "x": "day", "y": ["n"]}, "chart.type"),
        ({"type": "bar", "x": "day", "y": []}, "chart.y"),
        ({"type": "bar", "x": "day", "y": ["n", "n"]}, "chart.y"),
        ({"type": "bar", "y": ["n"]}, "chart"),
    ],
    ids=["unknown-type", "no-series", "series-twice", "no-x"],
)
async def test_a_chart_that_cannot_be_drawn_is_a_422_naming_its_field(
    client: Client, admin: dict[str, str], chart: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/reports", json={**NEW_REPORT, "chart": chart}, headers=admin)

    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.text
