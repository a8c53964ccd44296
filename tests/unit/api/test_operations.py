"""Health, readiness, metrics and the OpenAPI document: open routes that operators and client authors rely on."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from litestar.testing import AsyncTestClient

from api.app import build_app
from api.auth import JwtSettings
from application.job_limits import MAX_LIMIT
from domain.reports import (
    MAX_CHART_SERIES,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    MAX_QUERY_LENGTH,
    PARAMETER_NAME_PATTERN,
)
from tests.unit.api.conftest import Backend, Client, dependencies

CONTRACT_ROUTES = {
    ("/api/v1/reports", "post"),
    ("/api/v1/reports", "get"),
    ("/api/v1/reports/{reportId}", "get"),
    ("/api/v1/reports/{reportId}", "put"),
    ("/api/v1/reports/{reportId}", "delete"),
    ("/api/v1/reports/{reportId}/generate", "post"),
    ("/api/v1/jobs/{jobId}", "get"),
    ("/api/v1/jobs/{jobId}/result", "get"),
    ("/api/v1/jobs/{jobId}/cancel", "post"),
    ("/health/live", "get"),
    ("/health/ready", "get"),
    ("/metrics", "get"),
}


async def test_liveness_is_200_without_a_token(client: Client) -> None:
    response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readiness_is_200_with_every_check_when_all_pass(client: Client) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": True, "queue": True}}


async def test_readiness_is_503_problem_with_retry_after_when_the_database_is_down(
    client: Client, backend: Backend
) -> None:
    backend.db.unavailable = True

    response = await client.get("/health/ready")

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["checks"] == {"database": False, "queue": True}
    assert "database" in problem["detail"]


async def test_readiness_that_raises_is_503_not_500(backend: Backend, jwt_settings: JwtSettings) -> None:
    async def broken() -> Mapping[str, bool]:
        raise ConnectionError("redis://:password@cache:6379 refused")

    app = build_app(dependencies(backend, jwt_settings, readiness=broken))
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/health/ready")

    assert response.status_code == 503
    assert "password" not in response.text


async def test_metrics_count_requests_by_route_template_not_raw_path(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()
    await client.post(f"/api/v1/reports/{report.id}/generate", json={"parameters": {"region": "EU"}}, headers=alice)
    await client.get(f"/api/v1/jobs/{report.id}", headers=alice)
    await client.get("/no/such/route")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'reportgen_http_requests_total{method="POST",route="/api/v1/reports/{reportId}/generate",status="202"} 1.0'
        in text
    )
    assert 'reportgen_http_requests_total{method="GET",route="/api/v1/jobs/{jobId}",status="404"} 1.0' in text
    assert 'reportgen_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'reportgen_http_request_duration_seconds_bucket{le="0.005",method="GET",route="unmatched"}' in text
    assert "reportgen_http_requests_in_progress 1.0" in text
    assert "reportgen_jobs_submitted_total 1.0" in text
    assert str(report.id) not in text
    assert "/no/such/route" not in text


async def test_unusual_methods_share_one_metrics_label(client: Client) -> None:
    await client.request("PROPFIND", "/health/live")

    assert 'method="OTHER"' in (await client.get("/metrics")).text


async def test_openapi_document_describes_every_route_with_bearer_security(client: Client) -> None:
    response = await client.get("/schema/openapi.json")

    assert response.status_code == 200
    doc = response.json()
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented >= CONTRACT_ROUTES
    assert doc["components"]["securitySchemes"]["BearerToken"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWT: `sub` is the user id, `roles` may hold `admin`.",
    }  # fmt: skip
    assert doc["paths"]["/api/v1/jobs/{jobId}"]["get"]["security"] == [{"BearerToken": []}]
    assert "security" not in doc["paths"]["/health/live"]["get"]


@pytest.mark.parametrize(
    ("path", "method", "schema", "required"),
    [
        ("/api/v1/reports", "post", "ReportIn", True),
        ("/api/v1/reports/{reportId}", "put", "ReportIn", True),
        ("/api/v1/reports/{reportId}/generate", "post", "GenerateIn", False),
    ],
)
async def test_openapi_document_describes_request_bodies(
    client: Client, path: str, method: str, schema: str, required: bool
) -> None:
    fields = {
        "ReportIn": {
            "name",
            "description",
            "query",
            "parameters",
            "formats",
            "deliveryTarget",
            "asyncEnabled",
            "chart",
            "csvFormulaEscape",
        },
        "GenerateIn": {"parameters", "format", "callbackUrl"},
    }
    doc = (await client.get("/schema/openapi.json")).json()

    body = doc["paths"][path][method]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
    assert body["required"] is required
    assert set(doc["components"]["schemas"][schema]["properties"]) == fields[schema]


async def test_openapi_document_states_what_the_server_enforces_of_request_bodies(client: Client) -> None:
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    report = schemas["ReportIn"]["properties"]

    closed = {
        name: schemas[name].get("additionalProperties") for name in ("ReportIn", "ParameterIn", "GenerateIn", "ChartIn")
    }
    assert closed == dict.fromkeys(closed, False), "unknown keys are a 422"
    assert (report["name"]["minLength"], report["name"]["maxLength"]) == (1, MAX_NAME_LENGTH)
    assert report["description"]["maxLength"] == MAX_DESCRIPTION_LENGTH
    assert report["query"]["maxLength"] == MAX_QUERY_LENGTH
    assert (report["formats"]["minItems"], report["formats"]["uniqueItems"]) == (1, True)
    assert schemas["ParameterIn"]["properties"]["name"]["pattern"] == PARAMETER_NAME_PATTERN
    series = schemas["ChartIn"]["properties"]["y"]
    assert (series["minItems"], series["maxItems"], series["uniqueItems"]) == (1, MAX_CHART_SERIES, True)
    chart_type = schemas["ChartIn"]["properties"]["type"]
    assert schemas[chart_type["$ref"].rsplit("/", 1)[1]]["enum"] == ["bar", "line"]
    limit = schemas["JobLimitIn"]["properties"]["maxActiveJobs"]
    assert (limit["minimum"], limit["maximum"]) == (0, MAX_LIMIT)


async def test_openapi_document_describes_problem_responses(client: Client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()

    responses = doc["paths"]["/api/v1/reports/{reportId}/generate"]["post"]["responses"]
    assert set(responses) >= {"202", "400", "401", "404", "409", "413", "422", "503"}
    assert responses["409"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert set(doc["components"]["schemas"]["Problem"]["properties"]) >= {
        "type", "title", "status", "detail", "instance", "requestId", "errors", "jobStatus",
    }  # fmt: skip


async def test_openapi_document_describes_the_client_controls(client: Client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()

    generate = doc["paths"]["/api/v1/reports/{reportId}/generate"]["post"]
    [key] = [p for p in generate["parameters"] if p["in"] == "header"]
    assert (key["name"], key["required"], key["schema"]["maxLength"]) == ("Idempotency-Key", False, 255)
    assert "Idempotent-Replayed" in generate["responses"]["202"]["headers"]
    assert "429" in generate["responses"]
    cancel = doc["paths"]["/api/v1/jobs/{jobId}/cancel"]["post"]
    assert cancel["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobStatusOut"
    }
    assert set(cancel["responses"]) >= {"202", "400", "401", "404", "409", "503"}
    assert "410" in doc["paths"]["/api/v1/jobs/{jobId}/result"]["get"]["responses"]
    assert "expiresAt" in doc["components"]["schemas"]["JobStatusOut"]["required"]


async def test_docs_page_is_served_at_schema(client: Client) -> None:
    response = await client.get("/schema")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


async def test_the_docs_page_loads_swagger_ui_from_this_server_and_serves_only_its_files(client: Client) -> None:
    page = await client.get("/schema")
    bundle = await client.get("/schema/assets/swagger-ui-bundle.js")
    other_file = await client.get("/schema/assets/swagger-editor.js")

    assert page.status_code == 200
    assert "/schema/assets/swagger-ui-bundle.js" in page.text
    assert "/schema/assets/swagger-ui.css" in page.text
    assert "https://" not in page.text, "no asset from a CDN"
    assert (bundle.status_code, bundle.headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert bundle.headers["cache-control"] == "max-age=86400"
    assert other_file.status_code == 404
