"""The ASGI application factory (`bootstrap.web:create_app`), used by `reportgen serve` and by tests."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar
from prometheus_client import REGISTRY

from api.app import ApiDependencies, build_app
from api.auth import JwtSettings
from bootstrap.container import Container, build_container
from bootstrap.embedded import with_dev_secret
from infrastructure.inprocess import InProcessJobQueue
from infrastructure.observability import configure_logging
from infrastructure.periodic import run_periodically
from settings import Settings


def jwt_settings(settings: Settings) -> JwtSettings:
    return JwtSettings(
        secret=settings.jwt_secret,
        public_key=settings.jwt_public_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


def log_format(settings: Settings) -> str:
    if settings.log_format != "auto":
        return settings.log_format
    return "console" if settings.embedded and sys.stdout.isatty() else "json"


def create_app(settings: Settings | None = None, *, configure_logs: bool = True, **overrides: Any) -> Litestar:
    """The API app; in embedded mode its lifespan also runs the in-process worker."""
    settings = with_dev_secret(settings or Settings.from_env(os.environ))
    if configure_logs:
        configure_logging(fmt=log_format(settings), level=settings.log_level)
    container = build_container(settings, **overrides)

    def lifespan() -> AbstractAsyncContextManager[None]:
        return _run(container)

    return build_app(
        ApiDependencies(
            initiate=container.initiate,
            get_status=container.get_status,
            get_result=container.get_result,
            cancel=container.cancel,
            create_report=container.create_report,
            update_report=container.update_report,
            delete_report=container.delete_report,
            get_report=container.get_report,
            list_reports=container.list_reports,
            auth=jwt_settings(settings),
            readiness=container.readiness,
            registry=overrides.get("registry", REGISTRY),
            lifespan=[lifespan],
            poll_after_seconds=settings.poll_after_seconds,
            max_body_bytes=settings.max_body_bytes,
        )
    )


@asynccontextmanager
async def _run(container: Container) -> AsyncIterator[None]:
    periodic: list[asyncio.Task[None]] = []
    if isinstance(container.queue, InProcessJobQueue):
        # Embedded mode: this process is the only worker, so it also does what arq cron does for workers.
        settings = container.settings
        await container.queue.start(container.run_job)
        await container.reconcile.execute(orphan_running=True)
        periodic = [
            asyncio.create_task(
                run_periodically(container.reconcile.execute, settings.reconcile_interval_seconds, name="reconcile")
            ),
            asyncio.create_task(
                run_periodically(container.sweep.execute, settings.sweep_interval_seconds, name="sweep")
            ),
        ]
    try:
        yield
    finally:
        for task in periodic:
            task.cancel()
        await asyncio.gather(*periodic, return_exceptions=True)
        await container.aclose()
