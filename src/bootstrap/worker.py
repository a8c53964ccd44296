"""The arq worker: `reportgen worker`, or `arq bootstrap.worker.WorkerSettings` (read from the environment then)."""

from __future__ import annotations

import os
from typing import Any

from bootstrap.container import build_container
from bootstrap.web import log_format
from infrastructure.arq.jobs import RECONCILE, RUN_REPORT_JOB, SWEEP, worker_options
from infrastructure.observability import configure_logging
from settings import Settings, SettingsError


def worker_settings(settings: Settings) -> type:
    """An arq WorkerSettings class whose startup builds the container into ctx and whose shutdown closes it."""
    if settings.redis_url is None:
        raise SettingsError(["REPORTGEN_REDIS_URL: required for `reportgen worker` (the arq queue lives in Redis)"])

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(fmt=log_format(settings), level=settings.log_level)
        container = build_container(settings)
        ctx["container"] = container
        ctx[RUN_REPORT_JOB] = container.run_job
        ctx[RECONCILE] = container.reconcile.execute
        ctx[SWEEP] = container.sweep.execute

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "container" in ctx:
            await ctx["container"].aclose()

    options = worker_options(
        max_jobs=settings.worker_concurrency,
        job_timeout_seconds=settings.report_timeout_seconds + 60,
        max_tries=settings.max_attempts + 10,  # database-down retries at claim time use arq tries too
        queue_name=settings.queue_name,
        redis_url=settings.redis_url,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        reconcile_every_seconds=settings.reconcile_interval_seconds,
        sweep_every_seconds=settings.sweep_interval_seconds,
    )
    attributes = {**options, "on_startup": on_startup, "on_shutdown": on_shutdown}
    return type("WorkerSettings", (), attributes)


def __getattr__(name: str) -> Any:
    # `arq bootstrap.worker.WorkerSettings` looks the class up by name; build it then, not at import.
    if name == "WorkerSettings":
        return worker_settings(Settings.from_env(os.environ))
    raise AttributeError(name)
