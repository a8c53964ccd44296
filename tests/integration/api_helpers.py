"""The API wired as in production on a real container, served on the test's own event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from api.app import ApiDependencies, build_app
from api.auth import JwtSettings
from bootstrap.container import Container

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
AUTH = JwtSettings(secret=SECRET)


@asynccontextmanager
async def api_client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API on `container` (tokens signed with SECRET), without its lifespan: jobs run when the test
    runs them. On this test's event loop, unlike AsyncTestClient's portal, so that the test may use the container's
    connections too."""
    deps = ApiDependencies(
        use_cases=container.use_cases,
        auth=AUTH,
        readiness=container.readiness,
        registry=container.registry,
        lifespan=(),
        poll_after_seconds=1,
    )
    app: Any = build_app(deps)  # an ASGI app; httpx's annotation of one is narrower than Litestar's signature
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as client:
        yield client
