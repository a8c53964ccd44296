"""The arq worker: `reportgen worker`, or `arq bootstrap.worker.WorkerSettings` (read from the environment then)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from arq.worker import get_kwargs
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from bootstrap.container import WEBHOOK_INTERVAL_SECONDS, build_container, job_timeout_seconds
from bootstrap.metrics import use_single_process_metrics
from bootstrap.reporting import PrivilegedReports, guard_reports
from bootstrap.web import log_format, secrets_of
from infrastructure.arq.jobs import RECONCILE, RUN_REPORT_JOB, SWEEP, drop_arq_report_job_lines, worker_options
from infrastructure.arq.worker import ReportWorker
from infrastructure.logs import configure_logging
from infrastructure.periodic import run_periodically
from settings import Settings, SettingsError

log = logging.getLogger(__name__)
RESTART_DELAY_SECONDS = 2.0


def serve_metrics(port: int) -> Callable[[], None] | None:
    """Serve the process's default registry on `port` (all interfaces) from a thread; returns how to stop it.

    A port that cannot be bound is logged as an error and the worker runs on: running jobs matters more than
    exposing metrics, and a scrape target that is down is visible in Prometheus (`up == 0`).
    """
    if port == 0:
        return None
    try:
        server, thread = start_http_server(port)
    except OSError as exc:
        log.error("worker metrics endpoint not started on port %d: %s", port, exc.strerror or exc)
        return None
    log.info("worker metrics endpoint listening on port %d", port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def worker_settings(settings: Settings) -> type:
    """An arq WorkerSettings class whose startup builds the container into ctx and whose shutdown closes it."""
    if settings.redis_url is None:
        raise SettingsError(["REPORTGEN_REDIS_URL: required for `reportgen worker` (the arq queue lives in Redis)"])

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(fmt=log_format(settings), level=settings.log_level, secrets=secrets_of(settings))
        drop_arq_report_job_lines()
        use_single_process_metrics()
        container = build_container(settings)
        ctx["container"] = container
        try:
            await guard_reports(container)
        except PrivilegedReports as exc:
            raise SystemExit(f"reportgen worker: {exc}") from None
        ctx[RUN_REPORT_JOB] = container.run_job
        ctx[RECONCILE] = container.run_reconcile
        ctx[SWEEP] = container.sweep.execute
        # Every worker samples the gauges itself (arq cron runs each tick on one worker only).
        sample = container.job_gauges().sample
        every = settings.reconcile_interval_seconds
        ctx["job_gauges"] = asyncio.create_task(run_periodically(sample, every, name="job_gauges"))
        # Every worker delivers webhooks, each taking its own due deliveries (the claim skips those another holds):
        # a loop of its own rather than an arq cron job, which would put a queue entry in Redis every second.
        deliver = container.deliver_webhooks
        ctx["webhooks"] = asyncio.create_task(
            run_periodically(deliver, WEBHOOK_INTERVAL_SECONDS, name="deliver_webhooks", wake=container.webhooks_due)
        )
        ctx["stop_metrics"] = serve_metrics(settings.worker_metrics_port)
        # What start-up loaded lives as long as the process: keep it out of the collector's full passes, which a
        # big report's rows otherwise trigger over the whole heap (bench/README.md has the figure).
        gc.freeze()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        for task in (ctx[name] for name in ("job_gauges", "webhooks") if name in ctx):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if ctx.get("stop_metrics") is not None:
            ctx["stop_metrics"]()
        if "container" in ctx:
            await ctx["container"].aclose()

    options = worker_options(
        max_jobs=settings.worker_concurrency,
        job_timeout_seconds=job_timeout_seconds(settings),
        max_tries=settings.max_attempts + 10,  # database-down retries at claim time use arq tries too
        queue_name=settings.queue_name,
        redis_url=settings.redis_url,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        reconcile_every_seconds=settings.reconcile_interval_seconds,
        sweep_every_seconds=settings.sweep_interval_seconds,
    )
    attributes = {**options, "on_startup": on_startup, "on_shutdown": on_shutdown}
    return type("WorkerSettings", (), attributes)


def run(settings: Settings) -> None:
    """`reportgen worker`: run the arq worker; when Redis goes away under it, start the process afresh.

    arq's poll loop lets a refused connection escape and the worker exit (redis-py takes a pooled connection
    outside its retry policy). Running jobs are handed back to the queue as the worker stops, and the
    reconciler re-enqueues them once Redis is back. The process then replaces itself (same pid, clean state:
    metrics, pools, the metrics port) after a pause, and arq's start-up waits for Redis with its own retries.
    Under `arq bootstrap.worker.WorkerSettings` the process manager's restart policy plays this part (the
    systemd units restart on failure).
    """
    try:
        options: dict[str, Any] = dict(get_kwargs(worker_settings(settings)))
        ReportWorker(**options).run()
    except (RedisError, OSError) as exc:
        log.warning("worker lost Redis (%s); starting afresh in %.0f s", exc, RESTART_DELAY_SECONDS)
        time.sleep(RESTART_DELAY_SECONDS)
        os.execv(sys.executable, sys.orig_argv)  # noqa: S606 - the same command line this process was started with


def __getattr__(name: str) -> Any:
    # `arq bootstrap.worker.WorkerSettings` looks the class up by name; build it then, not at import.
    if name == "WorkerSettings":
        return worker_settings(Settings.from_env(os.environ))
    raise AttributeError(name)
