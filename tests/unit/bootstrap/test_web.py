"""The API app's lifespan, as `reportgen serve` and `make run` build it."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry

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
