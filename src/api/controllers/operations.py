"""Operations: liveness, readiness and Prometheus metrics; open to everyone (no token)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import structlog
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.errors import problem_responses
from api.schemas import Health
from api.unavailable import ServiceNotReady

Readiness = Callable[[], Awaitable[Mapping[str, bool]]]
"""Checks the service's dependencies; returns the result of each check by name, e.g. {"database": True}."""

log = structlog.get_logger(__name__)


class OperationsController(Controller):
    tags = ("operations",)

    @get("/health/live", summary="Liveness")
    async def live(self) -> Health:
        """200 while the process runs."""
        return Health(status="ok")

    @get("/health/ready", summary="Readiness", responses=problem_responses(503))
    async def ready(self, readiness: NamedDependency[Readiness]) -> Health:
        """200 when every dependency answers; else 503 (a problem with `checks`) and `Retry-After`."""
        try:
            checks = dict(await readiness())
        except Exception:
            log.warning("readiness_check_failed", exc_info=True)
            raise ServiceNotReady({}) from None
        if not all(checks.values()):
            raise ServiceNotReady(checks)
        return Health(status="ready", checks=checks)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain")
    async def metrics(self, registry: NamedDependency[CollectorRegistry]) -> Response[bytes]:
        """The registry in Prometheus text exposition format."""
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
