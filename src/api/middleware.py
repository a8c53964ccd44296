"""The request context: request id, one access-log line and the HTTP metrics, for every request.

`RequestContextMiddleware` wraps the whole Litestar ASGI handler, outside the router, so that it also sees
requests that match no route (404, 405) and every error response. The request id is the caller's
`X-Request-ID` when it is sane (1-128 characters of `A-Z a-z 0-9 . _ : -`), else a new UUID; it is sent back
on every response, bound as `request_id` in structlog's context variables and handed to the jobs started by
the request. The access log holds method, route template, status, duration and user id; never a header.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.exceptions import ClientException
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from api.auth import Principal
from api.headers import first_header
from api.metrics import UNMATCHED_ROUTE, ApiMetrics

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
_STATE_KEY = "request_id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

ACCESS_LOGGER = __name__
"""The `logger` of the access line; its level (INFO) decides whether the line is written."""
log = structlog.get_logger(ACCESS_LOGGER)
_ACCESS_LOG = logging.getLogger(ACCESS_LOGGER)  # the stdlib logger under `log`: its level check is cached

AccessLog = Callable[[dict[str, Any]], None]
"""Writes one access line from its fields (`event`, `method`, `route`, `status`, `duration_ms`, `request_id`,
`user_id`), adding `timestamp`, `level` and `logger` and redacting as every line is redacted."""


def structlog_access_log(fields: dict[str, Any]) -> None:
    """The access line through structlog's pipeline, like any other line (tests capture it there)."""
    log.info(**fields)


_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)
"""The version (4) and variant (RFC 4122) bits of a random UUID, as `uuid.UUID(int=..., version=4)` sets them."""


def new_request_id() -> str:
    """A random (version 4) UUID from the process's pseudo-random generator, reseeded in each forked child:
    a request id needs to be unique, not unguessable, and `uuid4()` costs a system call per request. The text is
    formatted from the integer directly, as `str(UUID(int=..., version=4))` writes it, without building a UUID."""
    digits = f"{random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def request_id_of(scope: Scope) -> str:
    """The id of the request in `scope`, assigned on first use (the caller's if sane, else a new one)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    request_id = state.get(_STATE_KEY)
    if not isinstance(request_id, str):
        request_id = _caller_request_id(scope) or new_request_id()
        state[_STATE_KEY] = request_id
    return request_id


def _caller_request_id(scope: Scope) -> str | None:
    candidate = first_header(scope, _HEADER_KEY)
    return candidate if candidate is not None and _SANE_REQUEST_ID.fullmatch(candidate) else None


def route_of(scope: Scope) -> str:
    """The template of the matched route (bounded, unlike the raw path), or `unmatched`."""
    fields: Mapping[str, object] = scope  # Litestar sets `path_template` only once a route has matched
    template = fields.get("path_template")
    return template if isinstance(template, str) else UNMATCHED_ROUTE


DEFAULT_BODY_TIMEOUT_SECONDS = 30.0


def _body_within(receive: Receive, seconds: float) -> Receive:
    """`receive` whose request body must arrive whole within `seconds` of the first read (else 408), and whose
    client leaving before the whole body came is a 400, not Litestar's 500 with a traceback. Once the body is in,
    messages pass as they come (a streamed response listens for the client leaving, for as long as it streams)."""
    deadline: float | None = None
    complete = False

    async def receive_body() -> ReceiveMessage:
        nonlocal deadline, complete
        if complete:
            return await receive()
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + seconds
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise ClientException(
                status_code=HTTPStatus.REQUEST_TIMEOUT, detail=f"The request body did not arrive within {seconds:g} s."
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientException(detail="The client disconnected before the request body was complete.")
        complete = not message.get("more_body", False)
        return message

    return receive_body


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: ApiMetrics,
        access_log: AccessLog = structlog_access_log,
        body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._access_log = access_log
        self._body_timeout = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        header = (_HEADER_KEY, request_id.encode())
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        started = time.perf_counter()
        self._metrics.in_progress.inc()
        # bind + reset rather than bound_contextvars, which copies the whole context to save what it overwrites
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self._app(scope, _body_within(receive, self._body_timeout), send_with_request_id)
        finally:
            self._metrics.in_progress.dec()
            self._record(scope, request_id, status, time.perf_counter() - started)
            structlog.contextvars.reset_contextvars(**tokens)

    def _record(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        route = route_of(scope)
        method = str(scope.get("method", ""))
        self._metrics.observe(method, route, status, seconds)
        if not _ACCESS_LOG.isEnabledFor(logging.INFO):  # skip building a line that the level drops anyway
            return
        user = scope.get("user")
        self._access_log(
            {
                "event": "http_request",
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "request_id": request_id,
                "user_id": user.user_id if isinstance(user, Principal) else None,
            }
        )
