"""Webhooks through real processes (`reportgen serve` + `reportgen worker` on PostgreSQL and Redis, and the embedded
mode), to a real receiver on 127.0.0.1 (allowed through REPORTGEN_WEBHOOK_ALLOWED_HOSTS)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.conftest import Deployment, _base_env, deployed, production_env, wait_for_status
from tests.e2e.test_embedded_mode import printed_token
from tests.e2e.test_production_mode import SERIES, create_report, generate
from tests.loopback import free_port
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
WEBHOOK_ENV = {
    "REPORTGEN_WEBHOOK_SECRET": SECRET,
    "REPORTGEN_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "REPORTGEN_WEBHOOK_RETRY_SECONDS": "0.5 0.5 0.5",
}


@pytest.fixture
def hooked(tmp_path: Path, e2e_database_url: str, e2e_reporting_url: str, e2e_redis_url: str) -> Iterator[Deployment]:
    """The production deployment, with webhooks configured."""
    env = production_env(tmp_path, e2e_database_url, e2e_reporting_url, e2e_redis_url) | WEBHOOK_ENV
    with deployed(tmp_path, env) as deployment:
        yield deployment


def callback_of(client: Any, job_id: str) -> dict[str, Any]:
    state: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()["callback"]
    return state


def wait_for_callback(client: Any, job_id: str, done: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not done(state := callback_of(client, job_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return state


def test_a_receiver_gets_a_signed_job_succeeded_and_one_that_was_down_gets_it_later(hooked: Deployment) -> None:
    report_id = create_report(hooked, SERIES)
    down_port = free_port()
    with Receiver(204) as receiver, hooked.client(hooked.token("alice")) as alice:
        job = generate(alice, report_id, {"format": "csv", "callbackUrl": receiver.url}).json()
        late = generate(alice, report_id, {"callbackUrl": f"http://127.0.0.1:{down_port}/hooks"}).json()

        [received] = receiver.wait_for(1)
        payload = Webhook(SECRET).verify(received.body, received.headers)
        assert received.headers["webhook-id"] == f"msg_{job['jobId']}"
        assert (payload["type"], payload["data"]["status"]) == ("job.succeeded", "Succeeded")
        recorded = wait_for_callback(alice, job["jobId"], lambda state: state["status"] != "pending")
        assert recorded == {"status": "delivered", "attempts": 1, "lastError": None}
        shown = alice.get(job["statusUrl"]).json()
        assert {k: v for k, v in payload["data"].items() if k != "callback"} == {
            k: v for k, v in shown.items() if k != "callback"
        }

        failing = wait_for_callback(alice, late["jobId"], lambda state: state["attempts"] >= 1)
        assert failing["status"] == "pending"
        assert failing["lastError"].startswith("ConnectError")
        with Receiver(200, port=down_port) as revived:
            [retried] = revived.wait_for(1)
            assert retried.headers["webhook-id"] == f"msg_{late['jobId']}"
            assert Webhook(SECRET).verify(retried.body, retried.headers)["type"] == "job.succeeded"
            delivered = wait_for_callback(alice, late["jobId"], lambda state: state["status"] != "pending")
        assert delivered["status"] == "delivered"
        assert delivered["attempts"] >= 2
        assert wait_for_status(alice, late["jobId"], {"Succeeded"})["status"] == "Succeeded"


def test_the_embedded_mode_delivers_a_cancelled_job(tmp_path: Path) -> None:
    port = free_port()
    deployment = Deployment(f"http://127.0.0.1:{port}", _base_env(tmp_path) | WEBHOOK_ENV, tmp_path)
    process = deployment.start("embedded", "serve", "--port", str(port))
    try:
        deployment.wait_ready(timeout=60)
        with Receiver(200) as receiver, deployment.client(printed_token(process)) as dev:
            reports = {r["name"]: r["id"] for r in dev.get("/api/v1/reports").json()}
            job = generate(dev, reports["Order lines export"], {"callbackUrl": receiver.url}).json()
            assert dev.post(f"/api/v1/jobs/{job['jobId']}/cancel").status_code in (200, 202)

            [received] = receiver.wait_for(1)
        payload = json.loads(received.body)
        assert Webhook(SECRET).verify(received.body, received.headers) == payload
        assert (payload["type"], payload["data"]["jobId"]) == ("job.cancelled", job["jobId"])
    finally:
        deployment.stop_all()
