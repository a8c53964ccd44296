"""Generate's `callbackUrl`: checked at once (422 naming it), shown on the job as `callback`, and the webhook payload
whose `data` is the job status body exactly as GET answers it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient

from api.app import build_app
from api.auth import JwtSettings
from api.webhooks import job_event_body
from application.initiate_report_job import InitiateAsynchronousReportJob
from application.job_admission import UnitOfWorkAdmission
from domain.callbacks import CallbackPolicy
from tests.unit.api.conftest import STATUS_FIELDS, Backend, Client, dependencies


@pytest.fixture
async def hooks_client(backend: Backend, jwt_settings: JwtSettings) -> AsyncIterator[Client]:
    """The app with webhooks enabled, plain http allowed to `hooks.internal`."""
    initiate = InitiateAsynchronousReportJob(
        backend.uow,
        UnitOfWorkAdmission(backend.uow),
        backend.queue,
        backend.clock,
        callback_policy=CallbackPolicy.of(["hooks.internal"]),
    )
    async with AsyncTestClient(app=build_app(dependencies(backend, jwt_settings, initiate=initiate))) as client:
        yield client


async def generate(client: Client, backend: Backend, headers: dict[str, str], callback_url: object) -> UUID:
    report = backend.add_report()
    body = {"parameters": {"region": "EU"}, "callbackUrl": callback_url}
    response = await client.post(f"/api/v1/reports/{report.id}/generate", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return UUID(response.json()["jobId"])


async def test_a_job_with_a_callback_shows_its_delivery_state_and_one_without_shows_none(
    hooks_client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    with_callback = await generate(hooks_client, backend, alice, "https://receiver.example/hooks?team=7")
    without = await generate(hooks_client, backend, alice, None)

    shown = (await hooks_client.get(f"/api/v1/jobs/{with_callback}", headers=alice)).json()
    plain = (await hooks_client.get(f"/api/v1/jobs/{without}", headers=alice)).json()

    assert shown["callback"] == {"status": "waiting", "attempts": 0, "lastError": None}
    assert set(plain) == STATUS_FIELDS
    callback = backend.db.jobs[with_callback].callback
    assert callback is not None
    assert callback.url == "https://receiver.example/hooks?team=7"
    assert callback.status_url == shown["statusUrl"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://receiver.example/hooks", "only https://"),
        ("ftp://receiver.example/hooks", "https://"),
        ("/relative/path", "https://"),
        ("https://user:pw@receiver.example/", "credentials"),
        ("https://127.0.0.1/hooks", "not a public address"),
        ("https://[::ffff:169.254.169.254]/latest", "not a public address"),
        ("https://receiver.example:99999/", "not a valid URL"),
        ("https://receiver.example/" + "a" * 2100, "at most 2048"),
    ],
)
async def test_a_callback_url_that_breaks_the_rule_is_a_422_naming_it(
    hooks_client: Client, backend: Backend, alice: dict[str, str], url: str, why: str
) -> None:
    report = backend.add_report()
    body = {"parameters": {"region": "EU"}, "callbackUrl": url}

    response = await hooks_client.post(f"/api/v1/reports/{report.id}/generate", json=body, headers=alice)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    [error] = response.json()["errors"]
    assert error["field"] == "callbackUrl"
    assert why in error["message"]
    assert backend.db.jobs == {}


async def test_plain_http_is_accepted_to_an_allowed_host(
    hooks_client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job_id = await generate(hooks_client, backend, alice, "http://HOOKS.internal:8080/in")

    assert backend.db.jobs[job_id].callback is not None


async def test_a_callback_url_is_refused_while_webhooks_are_not_configured(
    client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    report = backend.add_report()
    body = {"parameters": {"region": "EU"}, "callbackUrl": "https://receiver.example/hooks"}

    response = await client.post(f"/api/v1/reports/{report.id}/generate", json=body, headers=alice)

    assert response.status_code == 422
    assert "REPORTGEN_WEBHOOK_SECRET" in response.json()["errors"][0]["message"]


async def test_the_webhook_payload_holds_the_status_body_that_get_answers(
    hooks_client: Client, backend: Backend, alice: dict[str, str]
) -> None:
    job_id = await generate(hooks_client, backend, alice, "https://receiver.example/hooks")
    job = backend.db.jobs[job_id]
    backend.start(job)
    job.fail(backend.clock(), "REPORT_QUERY_FAILED", "The report query failed.", detail="admins only")

    payload = json.loads(job_event_body(job))
    answered = (await hooks_client.get(f"/api/v1/jobs/{job_id}", headers=alice)).json()

    assert payload["type"] == "job.failed"
    assert payload["timestamp"] == answered["finishedAt"]
    assert payload["data"] == answered
    assert "detail" not in payload["data"]["error"]
    assert payload["data"]["callback"] == {"status": "pending", "attempts": 0, "lastError": None}
