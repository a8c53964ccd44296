"""The Litestar application: `build_app(ApiDependencies(...))`, called by the composition root and by tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from litestar import Litestar, Router, get
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityScheme,
    Tag,
)
from litestar.params import PathParameter
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from litestar.types import Guard
from prometheus_client import CollectorRegistry

from api.auth import JwtAuthenticationMiddleware, JwtSettings, JwtVerifier
from api.controllers.generate import generate_report
from api.controllers.jobs import RESULT_MEDIA_TYPES, RESULT_SUFFIX, JobsController
from api.controllers.operations import OperationsController, Readiness
from api.controllers.reports import ReportsController
from api.controllers.users import UsersController
from api.errors import problem_handler
from api.jwks import RemoteKeySet
from api.metrics import ApiMetrics
from api.middleware import (
    DEFAULT_BODY_TIMEOUT_SECONDS,
    REQUEST_ID_HEADER,
    AccessLog,
    RequestContextMiddleware,
    structlog_access_log,
)
from api.schemas import request_structs
from api.services import ApiServices, UseCases
from api.unavailable import Monotonic, UnavailableAnswers

BEARER_SCHEME = "BearerToken"
LifespanFactory = Callable[[], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class ApiDependencies:
    """Everything the HTTP layer needs, built by the composition root (or by tests, on fakes)."""

    use_cases: UseCases
    auth: JwtSettings
    readiness: Readiness
    registry: CollectorRegistry
    """Where the HTTP metrics are registered (once per registry) and what `/metrics` exposes."""
    lifespan: Sequence[LifespanFactory]
    """Entered in order at startup, exited in reverse at shutdown (container, in-process worker)."""
    poll_after_seconds: int
    """`Retry-After` of a 202 and of the status of a job that is not terminal."""
    result_link_lifetime: timedelta | None = None
    """Downloads are 303 redirects to the object store's presigned URL, valid this long; None: streamed."""
    max_body_bytes: int = 1024 * 1024
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    """How long a request body may take to arrive whole (then 408)."""
    debug: bool = False
    access_log: AccessLog = structlog_access_log
    """Writes the line of each request (bootstrap passes a direct JSON writer in production)."""
    monotonic: Monotonic = time.monotonic
    """Paces the warnings about 503 answers (api.unavailable); tests pass a clock they move."""


def build_app(deps: ApiDependencies) -> Litestar:
    metrics = ApiMetrics.register(deps.registry)
    api = Router(
        path="/",
        route_handlers=[ReportsController, JobsController, UsersController, generate_report],
        middleware=[DefineMiddleware(JwtAuthenticationMiddleware, verifier=JwtVerifier(deps.auth))],
        security=[{BEARER_SCHEME: []}],
    )
    app = Litestar(
        route_handlers=[api, OperationsController, _docs_assets()],
        dependencies=_dependencies(deps, metrics),
        exception_handlers={Exception: problem_handler(UnavailableAnswers(metrics.unavailable, clock=deps.monotonic))},
        openapi_config=_openapi_config(),
        response_headers=[
            ResponseHeader(
                name=REQUEST_ID_HEADER,
                documentation_only=True,
                description="The caller's X-Request-ID when sane, else a new id.",
            )
        ],
        request_max_body_size=deps.max_body_bytes,
        lifespan=[_ignoring_app(factory) for factory in _lifespans(deps)],
        logging_config=None,
        debug=deps.debug,
    )
    _bind_options_handlers(app)
    _complete_openapi_document(app)
    # Outside the router, so that requests matching no route get a request id, a log line and metrics too.
    app.asgi_handler = RequestContextMiddleware(
        app.asgi_handler, metrics, deps.access_log, body_timeout_seconds=deps.body_timeout_seconds
    )
    return app


def _bind_options_handlers(app: Litestar) -> None:
    """Make each path's automatic OPTIONS answer list every method of the path.

    Litestar 2 makes that handler for the first handlers registered on a path and keeps answering with their
    methods when more are registered on it later (litestar-org/litestar#4169, fixed in Litestar 3): `OPTIONS
    /api/v1/reports` said `OPTIONS, POST` without `GET`. The handler reads the methods of the route it holds in its
    closure; point it at the path's final route. Once Litestar is fixed this changes nothing.
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"} and handler.handler_name == "options_handler":
                for cell in handler.fn.__closure__ or ():
                    if isinstance(cell.cell_contents, HTTPRoute):
                        cell.cell_contents = route


def _complete_openapi_document(app: Litestar) -> None:
    """What Litestar 2 leaves out or gets wrong of the document, once, now rather than at its first request:

    - `additionalProperties: false` on every request body, which refuses unknown keys (`RequestStruct`);
    - `anyOf` for a union of `integer` and `number` (a parameter's `default`): under `oneOf` an integer matches both
      and so neither, and a validator refuses `25`;
    - every media type a result can have, under its 200 and 206 (a response spec states one).
    """
    document = app.openapi_schema
    schemas = document.components.schemas or {}
    for struct in request_structs():
        schema = schemas.get(struct.__name__)
        if schema is not None:
            schema.additional_properties = False
    for schema in schemas.values():
        _numbers_any_of(schema)
    for path, item in (document.paths or {}).items():
        if path.endswith(RESULT_SUFFIX):
            for operation in (item.get, item.head):
                _result_media_types(operation)


def _result_media_types(operation: Operation | None) -> None:
    for status in ("200", "206"):
        response = (operation.responses or {}).get(status) if operation else None
        if isinstance(response, OpenAPIResponse) and response.content:
            binary = next(iter(response.content.values()))
            rows = OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT), description="The rows.")
            )
            response.content = {
                media_type: rows if media_type == "application/json" else binary for media_type in RESULT_MEDIA_TYPES
            }


def _numbers_any_of(schema: Schema | Reference | bool | None) -> None:
    if not isinstance(schema, Schema):
        return
    if schema.one_of and {"integer", "number"} <= _types_of(schema.one_of):
        schema.any_of, schema.one_of = schema.one_of, None
    for inner in [*(schema.properties or {}).values(), schema.items, schema.additional_properties]:
        _numbers_any_of(inner)


def _types_of(alternatives: Sequence[Schema | Reference]) -> set[str]:
    return {a.type.value for a in alternatives if isinstance(a, Schema) and isinstance(a.type, OpenAPIType)}


@get("/{path:str}", include_in_schema=False, sync_to_thread=False)
def _schema_not_found(path: Annotated[str, PathParameter()]) -> None:
    """Any other path under /schema: a 404 problem like every other unknown path (Litestar's own answers HTML)."""
    raise NotFoundException


def _dependencies(deps: ApiDependencies, metrics: ApiMetrics) -> dict[str, Provide]:
    values: dict[str, Any] = {
        "services": ApiServices(deps.use_cases, metrics, deps.poll_after_seconds, deps.result_link_lifetime),
        "readiness": _with_keys(deps.readiness, deps.auth.key_set),
        "registry": deps.registry,
    }
    return {name: _constant(value) for name, value in values.items()}


def _constant(value: Any) -> Provide:
    def dependency() -> Any:
        return value

    return Provide(dependency, use_cache=True, sync_to_thread=False)


def _lifespans(deps: ApiDependencies) -> list[LifespanFactory]:
    key_set = deps.auth.key_set
    return [*deps.lifespan, *([key_set.running] if key_set is not None else [])]


def _with_keys(readiness: Readiness, key_set: RemoteKeySet | None) -> Readiness:
    """With an identity provider's keys, the API is ready once it holds them (until then every token is refused);
    later the provider being down keeps the keys, and readiness."""
    if key_set is None:
        return readiness

    async def ready() -> Mapping[str, bool]:
        return {**await readiness(), "keys": key_set.loaded}

    return ready


def _ignoring_app(factory: LifespanFactory) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    return lambda _app: factory()


DOCS_ASSETS_PATH = "/schema/assets"
"""Where the docs page's Swagger UI files are served from, out of the installed swagger-ui-py package: the page
needs no CDN, so it works on a machine without internet."""
_SWAGGER_UI = ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "favicon-32x32.png")


def _docs_assets() -> Router:
    """The Swagger UI files the docs page loads, and no others of the package's directory."""
    directory = Path(str(files("swagger_ui") / "static"))
    return create_static_files_router(
        path=DOCS_ASSETS_PATH,
        directories=[directory],
        include_in_schema=False,
        # Files of the package that never change while this version is installed: browsers may keep them a day.
        cache_control=CacheControlHeader(max_age=86_400),
        name="docs-assets",
        guards=[_only(_SWAGGER_UI)],
    )


def _only(names: Sequence[str]) -> Guard:
    allowed = frozenset(names)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.path_params.get("file_path", "").lstrip("/") not in allowed:
            raise NotFoundException

    return guard


def _openapi_config() -> OpenAPIConfig:
    bearer = SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="A JWT: `sub` is the user id, `roles` may hold `admin`.",
    )
    return OpenAPIConfig(
        title="reportgen",
        version="1.0.0",
        path="/schema",
        # Registered first, our not-found handler answers the paths that no renderer serves.
        openapi_router=Router("/schema", route_handlers=[_schema_not_found], include_in_schema=False),
        description="On-demand, asynchronous report generation. Errors are RFC 9457 problems "
        "(`application/problem+json`).",
        components=Components(security_schemes={BEARER_SCHEME: bearer}),
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
                standalone_preset_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-standalone-preset.js",
                css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
                favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS_PATH}/favicon-32x32.png'>",
            )
        ],
        tags=[
            Tag(name="reports", description="Report configurations (writes need the admin role)."),
            Tag(name="jobs", description="Generate a report, poll its job, cancel it, download the result."),
            Tag(name="users", description="Per-user limits of active jobs (admins only)."),
            Tag(name="operations", description="Health and metrics; no token needed."),
        ],
        use_handler_docstrings=True,
    )
