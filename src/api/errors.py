"""One table from exceptions to RFC 9457 problems, registered once as the app's exception handler.

Every error is `application/problem+json` with `type`, `title`, `status`, `detail`, `instance` (the request
path) and `requestId`, plus `errors: [{field, message}]` for invalid input and `jobStatus` for a result that
is not ready or a job that has already finished. Type URIs:
- errors of this API's own vocabulary: `urn:reportgen:problem:<slug>` (e.g. `...:job-not-found`); stable
  identifiers to compare against, not web pages;
- plain HTTP errors (unknown route, wrong method, malformed request, 401, 403, 413, 500): `about:blank`,
  whose `title` is the status phrase (RFC 9457, section 4.2.1).
A 503 and a 429 carry `Retry-After`. Anything unexpected is logged with its traceback and answered with a
generic 500: no stack trace, driver message or SQL ever reaches the client.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from api.middleware import request_id_of
from api.schemas import IDEMPOTENCY_KEY_HEADER, FieldErrorOut, Problem
from api.unavailable import ServiceNotReady, UnavailableAnswers
from application.errors import ArtifactMissing, ArtifactStoreUnavailable, QueueUnavailable, StorageUnavailable
from domain.errors import (
    ConcurrentUpdate,
    DuplicateIdempotencyKey,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidJobTransition,
    JobAlreadyFinished,
    JobNotFound,
    NotPermitted,
    ReportNotAsyncDeliverable,
    ReportNotFound,
    ResultExpired,
    ResultNotReady,
    TooManyActiveJobs,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:reportgen:problem:"
ABOUT_BLANK = "about:blank"
RETRY_AFTER_SECONDS = 5
"""`Retry-After` of a 503 (a dependency is down) and of a 429 (too many active jobs): a fair first wait."""
_RETRY_AFTER_STATUSES = frozenset({HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE})

log = structlog.get_logger(__name__)
_CAMEL = re.compile(r"_([a-z])")


@dataclass(frozen=True, slots=True)
class ProblemKind:
    status: int
    slug: str
    title: str
    detail: str | None = None
    """A fixed client-facing detail; None uses the exception's message, which is written for clients."""


PROBLEMS: dict[type[Exception], ProblemKind] = {
    ReportNotFound: ProblemKind(404, "report-not-found", "Report not found"),
    JobNotFound: ProblemKind(404, "job-not-found", "Job not found"),
    NotPermitted: ProblemKind(403, "not-permitted", "Not permitted"),
    ReportNotAsyncDeliverable: ProblemKind(
        409, "report-not-async-deliverable", "Report not configured for asynchronous API delivery"
    ),
    ResultNotReady: ProblemKind(409, "result-not-ready", "Job result not ready"),
    ConcurrentUpdate: ProblemKind(
        409,
        "concurrent-update",
        "Changed by another request",
        "The resource was changed by another request; read it again and retry.",
    ),
    InvalidJobTransition: ProblemKind(409, "invalid-job-transition", "Job is in the wrong status"),
    JobAlreadyFinished: ProblemKind(409, "job-already-finished", "Job already finished"),
    DuplicateIdempotencyKey: ProblemKind(
        409,
        "idempotency-key-in-use",
        "Idempotency-Key in use",
        "Another request with this Idempotency-Key is being processed; retry it later.",
    ),
    ResultExpired: ProblemKind(
        410,
        "result-expired",
        "Job result expired",
        "The result of this job has expired under the retention policy; generate the report again.",
    ),
    ArtifactMissing: ProblemKind(
        410,
        "result-gone",
        "Job result gone",
        "The result of this job is no longer available; generate the report again.",
    ),
    InvalidInput: ProblemKind(422, "invalid-input", "Invalid input"),
    IdempotencyKeyReused: ProblemKind(422, "idempotency-key-reused", "Idempotency-Key reused"),
    TooManyActiveJobs: ProblemKind(429, "too-many-active-jobs", "Too many active jobs"),
    StorageUnavailable: ProblemKind(
        503, "storage-unavailable", "Storage unavailable", "The database is unavailable; retry later."
    ),
    QueueUnavailable: ProblemKind(
        503,
        "queue-unavailable",
        "Job queue unavailable",
        "The job could not be handed to a worker and will not run; retry later.",
    ),
    ArtifactStoreUnavailable: ProblemKind(
        503,
        "artifact-store-unavailable",
        "Result storage unavailable",
        "The storage that holds job results is unavailable; retry later.",
    ),
    ServiceNotReady: ProblemKind(503, "not-ready", "Service not ready"),
}


def make_problem(
    request: Request[Any, Any, Any],
    *,
    status: int,
    title: str,
    detail: str,
    type_: str = ABOUT_BLANK,
    **extensions: Any,
) -> Problem:
    return Problem(
        type=type_,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=request_id_of(request.scope),
        **extensions,
    )


def problem_as_response(problem: Problem, headers: dict[str, str] | None = None) -> Response[Problem]:
    headers = dict(headers or {})
    if problem.status in _RETRY_AFTER_STATUSES:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return Response(problem, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


ExceptionHandler = Callable[[Request[Any, Any, Any], Exception], Response[Problem]]


def problem_handler(unavailable: UnavailableAnswers) -> ExceptionHandler:
    """The exception handler of the app: `problem_response`, and each 503 reported to `unavailable`."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
        response = problem_response(request, exc)
        if response.status_code == HTTPStatus.SERVICE_UNAVAILABLE:
            unavailable.answered(request_id_of(request.scope), exc)
        return response

    return handle


def problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """Exceptions as problems: the table first, then Litestar's HTTP errors, then a generic 500."""
    kind = next((PROBLEMS[cls] for cls in type(exc).__mro__ if cls in PROBLEMS), None)
    if kind is not None:
        problem = make_problem(
            request,
            status=kind.status,
            title=kind.title,
            detail=kind.detail or str(exc),
            type_=PROBLEM_TYPE_PREFIX + kind.slug,
        )
        return problem_as_response(msgspec.structs.replace(problem, **_extensions(exc)))
    if isinstance(exc, HTTPException) and exc.status_code < HTTPStatus.INTERNAL_SERVER_ERROR:
        problem = make_problem(
            request, status=exc.status_code, title=HTTPStatus(exc.status_code).phrase, detail=exc.detail
        )
        return problem_as_response(msgspec.structs.replace(problem, **_extensions(exc)), exc.headers)
    log.error("unhandled_exception", method=request.method, route=request.scope.get("path_template"), exc_info=exc)
    status = exc.status_code if isinstance(exc, HTTPException) else HTTPStatus.INTERNAL_SERVER_ERROR
    return problem_as_response(
        make_problem(
            request,
            status=status,
            title=HTTPStatus(status).phrase,
            detail="An unexpected error occurred; it has been logged.",
        )
    )


def _extensions(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, InvalidInput):
        return {"errors": [FieldErrorOut(field=e.field, message=e.message) for e in exc.errors]}
    if isinstance(exc, IdempotencyKeyReused):
        return {"errors": [FieldErrorOut(field=IDEMPOTENCY_KEY_HEADER, message=str(exc))]}
    if isinstance(exc, ResultNotReady | JobAlreadyFinished):
        return {"job_status": exc.status}
    if isinstance(exc, ServiceNotReady):
        return {"checks": exc.checks}
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        return _parameter_errors(exc.extra)
    return {}


def _parameter_errors(extra: list[Any]) -> dict[str, Any]:
    """Litestar's path/query/header validation messages, with the parameters named as on the wire (camelCase
    for path and query parameters, `Idempotency-Key` for headers).

    Bodies are decoded by api.schemas.JsonBody, so the only body entry Litestar reports is a missing body
    (or, next to a bad parameter, an artefact of checking every field once one has failed).
    """
    entries = [e for e in extra if isinstance(e, dict) and "key" in e]
    errors = [
        FieldErrorOut(field=_wire_name(str(e["key"]), e.get("source")), message=str(e.get("message")))
        for e in entries
        if e.get("source") != "body"
    ]
    if errors:
        return {"errors": errors, "detail": "; ".join(f"{e.field}: {e.message}" for e in errors)}
    return {"detail": "The request needs a JSON body."} if entries else {}


def _wire_name(key: str, source: object) -> str:
    """`job_id` -> `jobId`; a header's `idempotency_key` -> `Idempotency-Key`."""
    if source == "header":
        return "-".join(part.capitalize() for part in key.split("_"))
    return _CAMEL.sub(lambda m: m.group(1).upper(), key)


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI descriptions of the problem responses that a route can give."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=HTTPStatus(status).phrase,
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in statuses
    }
