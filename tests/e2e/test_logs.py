"""Logs of real processes: JSON lines, one per request and per job transition, one request id from the API call
to the worker's lines, and no token or secret anywhere, even when a client puts one where we log."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jose import jwt

from tests.e2e.conftest import Deployment, Process, _base_env, deployed, wait_for_status
from tests.e2e.test_production_mode import SERIES, create_report

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

JWT_SECRET = secrets.token_urlsafe(40)  # [A-Za-z0-9_-]: also a well-formed X-Request-ID
SHORT_JWT = jwt.encode({"s": 1}, "another-key-of-thirty-two-bytes!!", algorithm="HS256")


@pytest.fixture
def deployment(
    tmp_path: Path, e2e_database_url: str, e2e_reporting_url: str, e2e_redis_url: str
) -> Iterator[Deployment]:
    """`reportgen serve --workers 2` and a `reportgen worker`, logging at DEBUG, JSON."""
    env = _base_env(tmp_path) | {
        "REPORTGEN_DATABASE_URL": e2e_database_url,
        "REPORTGEN_REPORTING_DATABASE_URL": e2e_reporting_url,
        "REPORTGEN_REDIS_URL": e2e_redis_url,
        "REPORTGEN_JWT_SECRET": JWT_SECRET,
        "REPORTGEN_LOG_LEVEL": "DEBUG",
        "REPORTGEN_WORKER_METRICS_PORT": "0",
    }
    with deployed(tmp_path, env, "--workers", "2") as deployment:
        yield deployment


def process(deployment: Deployment, name: str) -> Process:
    return next(p for p in deployment.processes if p.name == name)


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of a production process's output, each of which must be a JSON object."""
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def test_one_request_id_follows_a_job_from_the_request_to_the_worker(deployment: Deployment) -> None:
    report_id = create_report(deployment, SERIES)
    with deployment.client(deployment.token("alice")) as alice:
        response = alice.post(f"/api/v1/reports/{report_id}/generate", headers={"X-Request-ID": "trace-logs-7"})
        job_id = response.json()["jobId"]
        assert wait_for_status(alice, job_id, {"Succeeded", "Failed"})["status"] == "Succeeded"
    deployment.stop_all()  # flushes everything

    api = [line for line in json_lines(process(deployment, "api").output()) if line.get("request_id") == "trace-logs-7"]
    assert [(line["event"], line["method"], line["route"], line["status"], line["user_id"]) for line in api] == [
        ("http_request", "POST", "/api/v1/reports/{reportId}/generate", 202, "alice")
    ]
    assert api[0]["duration_ms"] >= 0
    worker = [line for line in json_lines(process(deployment, "worker").output()) if line.get("request_id")]
    assert [(line["event"], line["status"]) for line in worker] == [
        ("job started", "Running"),
        ("job succeeded", "Succeeded"),
    ]
    for line in worker:
        assert (line["request_id"], line["job_id"], line["report_id"], line["attempt"]) == (
            "trace-logs-7", job_id, report_id, 1
        )  # fmt: skip
    assert "duration_ms" not in worker[0]
    assert worker[1]["duration_ms"] > 0
    assert worker[1]["outcome"] == "succeeded"


def test_tokens_and_secrets_never_reach_the_logs(deployment: Deployment) -> None:
    report_id = create_report(deployment, SERIES)
    token = deployment.token("alice")
    forged = jwt.encode({"sub": "mallory"}, "not-the-service-key-but-long-enough", algorithm="HS256")
    with deployment.client(token) as alice:
        # A client that puts the service's key, or a token, where we do log: the request id.
        for request_id in (JWT_SECRET, SHORT_JWT):
            accepted = generate_with(alice, report_id, request_id)
            assert accepted["status"] == "Queued"
            assert wait_for_status(alice, accepted["jobId"], {"Succeeded", "Failed"})["status"] == "Succeeded"
        assert alice.get(f"/health/live?access_token={token}&password={JWT_SECRET}").status_code == 200
        assert alice.get("/api/v1/reports", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert alice.get("/api/v1/reports", headers={"Authorization": f"Basic {JWT_SECRET}"}).status_code == 401
    deployment.stop_all()

    for name in ("api", "worker"):
        output = process(deployment, name).output()
        for leaked in (JWT_SECRET, SHORT_JWT, token, forged):
            assert leaked not in output, f"{name} logged a secret"
        redacted = [line for line in json_lines(output) if line.get("request_id") == "[REDACTED]"]
        assert len(redacted) >= 2, f"{name}: the lines of the two requests are there, their ids redacted"


def generate_with(client: httpx.Client, report_id: str, request_id: str) -> dict[str, Any]:
    response = client.post(f"/api/v1/reports/{report_id}/generate", headers={"X-Request-ID": request_id})
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == request_id  # echoed to the caller, who sent it; never logged
    body: dict[str, Any] = response.json()
    return body
