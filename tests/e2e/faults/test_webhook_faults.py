"""Scenario 9, webhooks under faults: the receiver is down for a while, then freezes while the worker is mid-attempt
and the worker is killed; once a receiver and a worker are back, every delivery arrives, with the same
`webhook-id`, and each job's callback says delivered."""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.faults.conftest import CHECKABLE, FaultDeployment, record, wait_until
from tests.loopback import free_port
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(100)]

JOBS = 6
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def callbacks(client: httpx.Client, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    return {job_id: client.get(f"/api/v1/jobs/{job_id}").json().get("callback") or {} for job_id in job_ids}


def test_webhooks_survive_a_receiver_that_is_down_then_frozen_and_a_worker_killed_mid_attempt(
    faults: FaultDeployment,
) -> None:
    scenario = "9 webhooks: receiver down, then frozen, worker killed"
    port = free_port()
    faults.env |= {
        "REPORTGEN_WEBHOOK_SECRET": SECRET,
        "REPORTGEN_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "REPORTGEN_WEBHOOK_RETRY_SECONDS": " ".join(["0.5"] * 20),
    }
    faults.up(workers=1)
    report_id = faults.create_report(CHECKABLE)
    with faults.client(faults.token("alice")) as alice:
        body = {"parameters": {"rows": 5}, "callbackUrl": f"http://127.0.0.1:{port}/hooks"}
        job_ids = [alice.post(f"/api/v1/reports/{report_id}/generate", json=body).json()["jobId"] for _ in range(JOBS)]

        # Down: every delivery fails and is retried.
        retried = wait_until(lambda: all(c.get("attempts", 0) >= 2 for c in callbacks(alice, job_ids).values()), 30)
        states = callbacks(alice, job_ids)
        assert retried, states
        assert {c["status"] for c in states.values()} == {"pending"}
        assert all(c["lastError"] for c in states.values())

        # Frozen: the worker's attempts hang, and the worker is killed while they do.
        worker = faults.workers[0]
        with Receiver(hang=True, port=port) as frozen:
            assert frozen.wait_for(1, timeout=10), "an attempt reached the frozen receiver"
            killed_at = faults.kill(worker)

        with Receiver(200, port=port) as receiver:
            faults.start_worker()
            delivered = wait_until(
                lambda: all(c["status"] == "delivered" for c in callbacks(alice, job_ids).values()), 45, 0.2
            )
            record(scenario, "worker killed mid-attempt -> every webhook delivered", time.monotonic() - killed_at)
            received = list(receiver.received)
        states = callbacks(alice, job_ids)
        assert delivered, states
        assert {r.headers["webhook-id"] for r in received} == {f"msg_{job_id}" for job_id in job_ids}
        for message in received:
            payload = Webhook(SECRET).verify(message.body, message.headers)
            assert payload["type"] == "job.succeeded"
            assert message.headers["webhook-id"] == f"msg_{payload['data']['jobId']}"
        record(scenario, "deliveries received (at least once)", f"{len(received)} for {JOBS} jobs", "")
