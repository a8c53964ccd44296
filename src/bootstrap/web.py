"""The ASGI application factory (`bootstrap.web:create_app`), used by `reportgen serve` and by tests."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from litestar import Litestar
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import mark_process_dead

from api.app import ApiDependencies, build_app
from api.auth import JwtSettings
from api.jwks import RemoteKeySet
from api.middleware import ACCESS_LOGGER, AccessLog, structlog_access_log
from bootstrap.container import WEBHOOK_INTERVAL_SECONDS, Container, build_container
from bootstrap.embedded import with_dev_secret
from bootstrap.metrics import MULTIPROCESS_DIR_ENV, metrics_registry
from infrastructure.inprocess import InProcessJobQueue
from infrastructure.key_fetch import JwksFetcher
from infrastructure.logs import JsonAccessLog, configure_logging
from infrastructure.periodic import PeriodicWork, run_periodically
from settings import Settings


def jwt_settings(settings: Settings) -> JwtSettings:
    return JwtSettings(
        secret=settings.jwt_secret,
        public_key=settings.jwt_public_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        key_set=_key_set(settings),
    )


def _key_set(settings: Settings) -> RemoteKeySet | None:
    if settings.jwt_jwks_url is not None:
        return RemoteKeySet(JwksFetcher(settings.jwt_jwks_url))
    if settings.jwt_oidc_discovery and settings.jwt_issuer is not None:
        return RemoteKeySet(JwksFetcher(settings.jwt_issuer, discovery=True))
    return None


def log_format(settings: Settings) -> str:
    if settings.log_format != "auto":
        return settings.log_format
    return "console" if settings.embedded and sys.stdout.isatty() else "json"


def secrets_of(settings: Settings) -> list[str | None]:
    """Values no log line may show: the JWT key, the webhook secrets and the passwords in the configured URLs."""
    urls = (settings.database_url, settings.reporting_database_url, settings.redis_url)
    return [settings.jwt_secret, *settings.webhook_secret, *(urlsplit(url).password for url in urls if url)]


def create_app(settings: Settings | None = None, *, configure_logs: bool = True, **overrides: Any) -> Litestar:
    """The API app; in embedded mode its lifespan also runs the in-process worker."""
    settings = with_dev_secret(settings or Settings.from_env(os.environ))
    access_log: AccessLog = structlog_access_log
    if configure_logs:
        fmt, secrets = log_format(settings), secrets_of(settings)
        handler = configure_logging(fmt=fmt, level=settings.log_level, secrets=secrets)
        if fmt == "json":  # one line per request: rendered directly rather than through the processors
            access_log = JsonAccessLog(handler, logger=ACCESS_LOGGER, secrets=secrets)
    registry: CollectorRegistry = overrides.pop("registry", None) or metrics_registry()
    container = build_container(settings, registry=registry, **overrides)

    def lifespan() -> AbstractAsyncContextManager[None]:
        return _run(container)

    return build_app(
        ApiDependencies(
            use_cases=container.use_cases,
            auth=jwt_settings(settings),
            readiness=container.readiness,
            registry=registry,
            lifespan=[lifespan],
            poll_after_seconds=settings.poll_after_seconds,
            result_link_lifetime=(
                timedelta(seconds=settings.result_link_seconds) if settings.result_delivery == "redirect" else None
            ),
            max_body_bytes=settings.max_body_bytes,
            body_timeout_seconds=settings.request_body_timeout_seconds,
            access_log=access_log,
        )
    )


def _before_the_server_drains(callback: Callable[[], None]) -> None:
    """Run `callback` as soon as this process is told to stop (SIGTERM, SIGINT), ahead of the server's own handler.

    granian stops accepting on the signal, then waits for every request in flight before the lifespan's shutdown
    runs: too late for a request waiting for its job (`?wait=`, up to a minute), which must answer at once. Its handler
    is the event loop's (`loop.add_signal_handler`); asyncio keeps no public way to read a handler, so the previous
    one is taken from the loop and called after ours (tests/e2e/faults pin the behaviour). Without a server's handler
    (an app in a test client) nothing is installed."""
    loop = asyncio.get_running_loop()
    handlers: dict[int, asyncio.Handle] = getattr(loop, "_signal_handlers", {})
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = handlers.get(sig)
        if previous is None:
            continue

        def chained(previous: asyncio.Handle = previous) -> None:
            callback()
            previous._run()

        loop.add_signal_handler(sig, chained)


@asynccontextmanager
async def _run(container: Container) -> AsyncIterator[None]:
    periodic: list[asyncio.Task[None]] = []
    if isinstance(container.queue, InProcessJobQueue):
        # Embedded mode: this process is the only worker, so it also does what arq cron does for workers.
        settings = container.settings
        await container.queue.start(container.run_job)
        await container.run_reconcile(orphan_running=True)
        every: dict[str, tuple[PeriodicWork, float]] = {
            "reconcile": (container.run_reconcile, settings.reconcile_interval_seconds),
            "sweep": (container.sweep.execute, settings.sweep_interval_seconds),
            "deliver_webhooks": (container.deliver_webhooks, WEBHOOK_INTERVAL_SECONDS),
            "job_gauges": (container.job_gauges().sample, settings.reconcile_interval_seconds),
        }
        wake = {"deliver_webhooks": container.webhooks_due}  # a job with a callback ended: deliver at once
        periodic = [
            asyncio.create_task(run_periodically(fn, s, name=name, wake=wake.get(name)))
            for name, (fn, s) in every.items()
        ]
    elif container.remote_signals is not None and container.settings.redis_url is not None:
        # Jobs finish in the workers: hear of them, to answer the requests waiting here.
        periodic = [asyncio.create_task(container.remote_signals.listen(container.settings.redis_url))]
    _before_the_server_drains(container.signals.close)
    # What start-up loaded lives as long as the app: keep it out of the collector's full passes, which under load
    # grow with the requests in flight (bench/README.md has the figures). Unfrozen at shutdown, so that a process
    # that builds several apps (the tests) can still collect the ones it is done with.
    gc.freeze()
    try:
        yield
    finally:
        container.signals.close()  # waiting requests answer now, with the status their job has
        gc.unfreeze()
        for task in periodic:
            task.cancel()
        await asyncio.gather(*periodic, return_exceptions=True)
        await container.aclose()
        if MULTIPROCESS_DIR_ENV in os.environ:
            # Drop this process's share of the live gauges (requests in progress) as it leaves.
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
