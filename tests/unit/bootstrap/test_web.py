"""The API app's lifespan, as `reportgen serve` and `make run` build it."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path
from uuid import UUID

import pytest
import structlog
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry

from api.auth import JwtSettings, issue_token
from bootstrap.web import create_app
from infrastructure.persistence.migrate import migrate
from settings import Settings


async def test_what_start_up_loaded_is_frozen_out_of_the_collector_while_the_app_runs(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, artifact_dir=tmp_path / "artifacts")
    await asyncio.to_thread(migrate, settings.effective_database_url)
    app = create_app(settings, configure_logs=False, registry=CollectorRegistry())
    before = gc.get_freeze_count()

    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/health/live")).status_code == 200
        running = gc.get_freeze_count()

    assert running > before  # the app's objects: full collections under load no longer walk them
    assert gc.get_freeze_count() == 0  # unfrozen at shutdown: a process that built several apps can free them


async def test_the_production_app_writes_one_json_access_line_per_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "a-test-secret-that-is-long-enough-for-hs256"
    settings = Settings(var_dir=tmp_path, artifact_dir=tmp_path / "artifacts", jwt_secret=secret, log_format="json")
    await asyncio.to_thread(migrate, settings.effective_database_url)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    token = issue_token(JwtSettings(secret=secret), "alice")
    try:
        app = create_app(settings, registry=CollectorRegistry())  # configures JSON logging on sys.stdout
        async with AsyncTestClient(app=app) as client:
            headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "req-42"}
            response = await client.get(f"/api/v1/jobs/{UUID(int=1)}", headers=headers)
        logging.getLogger().handlers[0].flush()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["event"] == "http_request"]
    assert response.status_code == 404
    assert {k: v for k, v in line.items() if k not in ("timestamp", "duration_ms")} == {
        "event": "http_request", "method": "GET", "route": "/api/v1/jobs/{jobId}", "status": 404,
        "request_id": "req-42", "user_id": "alice", "level": "info", "logger": "api.middleware",
    }  # fmt: skip
    assert line["duration_ms"] >= 0
    assert token not in json.dumps(lines)
