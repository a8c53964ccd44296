"""Report jobs: poll one's status, cancel it, download its result (generate is in api.controllers.generate)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from inspect import getdoc
from typing import Annotated, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from litestar import Controller, Litestar, Response, get, head, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream
from msgspec import UNSET, UnsetType

from api.auth import AuthenticatedRequest
from api.cursors import decode_cursor, encode_cursor
from api.errors import problem_responses
from api.ranges import ByteRange, RangeNotSatisfiable, range_applies, requested_range
from api.schemas import CallbackOut, JobErrorOut, JobId, JobListOut, JobStatusOut, utc
from api.services import ApiServices
from application.job_queries import (
    MAX_WAIT_SECONDS,
    GetJobResult,
    GetJobStatus,
    JobQuery,
    JobResult,
    ListJobs,
    ListJobsQuery,
)
from application.ports import JobSelection
from domain.formats import OUTPUT_FORMATS
from domain.jobs import JobExecutionLog, JobStatus

JOB_STATUS_ROUTE = "job-status"
JOB_RESULT_ROUTE = "job-result"
RESULT_SUFFIX = "/result"
_MEDIA_TYPES = ", ".join(f"`{f.media_type}` for {f.name}" for f in OUTPUT_FORMATS)
RESULT_MEDIA_TYPES = (*(f.media_type for f in OUTPUT_FORMATS), "application/octet-stream")
"""A result's `Content-Type`: its format's; octet-stream for a format since removed from the registry."""
RETRY_AFTER = ResponseHeader(
    name="Retry-After",
    documentation_only=True,
    description="Seconds to wait before polling the job status (while it is not terminal).",
)


def job_status_out(job: JobExecutionLog, *, show_detail: bool, status_url: str, result_url: str) -> JobStatusOut:
    """The status body. An error's `detail` is the database's message, which can quote values and names from a
    query that only admins may read: it is shown to admins only (`show_detail`)."""
    error = None
    if job.error is not None:
        detail = job.error.detail if show_detail and job.error.detail is not None else UNSET
        error = JobErrorOut(code=job.error.code, message=job.error.message, detail=detail)
    return JobStatusOut(
        job_id=job.id,
        report_id=job.report_id,
        status=job.status,
        progress=job.progress,
        format=job.format,
        parameters=dict(job.parameters),
        attempts=job.attempts,
        created_at=utc(job.created_at),
        started_at=utc(job.started_at),
        finished_at=utc(job.finished_at),
        expires_at=utc(job.expires_at),
        error=error,
        status_url=status_url,
        result_url=result_url,
        callback=_callback_out(job),
    )


def _callback_out(job: JobExecutionLog) -> CallbackOut | UnsetType:
    callback = job.callback
    if callback is None:
        return UNSET
    return CallbackOut(status=callback.status, attempts=callback.attempts, last_error=callback.last_error)


def job_urls(request: AuthenticatedRequest, job_id: UUID) -> dict[str, str]:
    """Absolute URLs on the request's base URL (the result's route is the status's + `/result`): what
    `request.url_for(JOB_STATUS_ROUTE, jobId=...)` answers, with the route reversed once per app instead of on
    every poll."""
    return links(f"{status_url_base(request)}{job_id}")


def links(status_url: str) -> dict[str, str]:
    """A job's `status_url` and `result_url`, from the first."""
    return {"status_url": status_url, "result_url": f"{status_url}{RESULT_SUFFIX}"}


def status_url_base(request: AuthenticatedRequest) -> str:
    """The status URL of jobs up to the job id: `https://host/api/v1/jobs/`."""
    return f"{str(request.base_url).rstrip('/')}{_status_path_prefix(request.app)}"


@cache
def _status_path_prefix(app: Litestar) -> str:
    """`/api/v1/jobs/`: the status route's path up to the job id."""
    marker = "job-id"
    path = app.route_reverse(JOB_STATUS_ROUTE, jobId=marker)
    return path.removesuffix(marker)


def _status_response(
    request: AuthenticatedRequest, job: JobExecutionLog, poll_after_seconds: int, status_code: int = 200
) -> Response[JobStatusOut]:
    """The status body; `Retry-After` while the job is not terminal."""
    headers = {} if job.is_terminal else {"Retry-After": str(poll_after_seconds)}
    body = job_status_out(job, show_detail=request.user.is_admin, **job_urls(request, job.id))
    return Response(body, status_code=status_code, headers=headers)


def _job_query(request: AuthenticatedRequest, job_id: UUID) -> JobQuery:
    return JobQuery(job_id=job_id, user_id=request.user.user_id, is_admin=request.user.is_admin)


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    candidates = {candidate.strip().removeprefix("W/") for candidate in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


IfNoneMatch: TypeAlias = Annotated[str | None, HeaderParameter(name="If-None-Match")]
RangeHeader: TypeAlias = Annotated[str | None, HeaderParameter(name="Range")]
IfRange: TypeAlias = Annotated[str | None, HeaderParameter(name="If-Range")]


DEFAULT_PAGE, MAX_PAGE = 20, 100


def _moment(name: str, text: str | None) -> datetime | None:
    """A filter's time, ISO 8601 (RFC 3339); one without a zone is taken as UTC. Anything else is a 400 naming it."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationException(f"{name}: must be a date and time such as 2026-12-04T10:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _with_cursor(request: AuthenticatedRequest, cursor: str) -> str:
    """This request's URL with its cursor replaced: the next page, same filters."""
    url = urlsplit(str(request.url))
    query = [(name, value) for name, value in parse_qsl(url.query, keep_blank_values=True) if name != "cursor"]
    return urlunsplit(url._replace(query=urlencode([*query, ("cursor", cursor)])))


_RESULT_RESPONSES: dict[int, ResponseSpec] = {
    200: ResponseSpec(
        bytes,
        description=f"The artifact: {_MEDIA_TYPES}; with Content-Disposition, Content-Length, ETag and Accept-Ranges.",
        media_type="application/octet-stream",
        generate_examples=False,
    ),
    206: ResponseSpec(
        bytes,
        description="One byte range of the artifact (`Range: bytes=a-b`, `a-` or `-n`), with Content-Range; "
        "sent only when If-Range, if any, is the artifact's ETag. Several ranges get the whole artifact.",
        media_type="application/octet-stream",
        generate_examples=False,
    ),
    303: ResponseSpec(
        None,
        description="See Other (`REPORTGEN_RESULT_DELIVERY=redirect`, GET only): `Location` is a short-lived URL "
        "of the object store that serves the artifact (and a `Range` sent to it again).",
        generate_examples=False,
    ),
    304: ResponseSpec(None, description="Not Modified (If-None-Match matched the ETag)", generate_examples=False),
    **problem_responses(400, 401, 404, 409, 410, 416, 503),
}
"""GET's and HEAD's answers of the result (HEAD's without a body). The document lists every format's media type
under 200 and 206 (api.app completes it)."""


class JobsController(Controller):
    path = "/api/v1/jobs"
    tags = ("jobs",)

    @get(
        "/",
        summary="List jobs",
        description=getdoc(ListJobs),
        responses=problem_responses(400, 401, 403, 503),
    )
    async def list_jobs(
        self,
        request: AuthenticatedRequest,
        services: NamedDependency[ApiServices],
        status: Annotated[list[JobStatus] | None, QueryParameter(name="status", description="Repeatable.")] = None,
        report_id: Annotated[UUID | None, QueryParameter(name="reportId")] = None,
        owner_id: Annotated[str | None, QueryParameter(name="ownerId", description="Admins: one user's jobs.")] = None,
        created_after: Annotated[str | None, QueryParameter(name="createdAfter", format="date-time")] = None,
        created_before: Annotated[str | None, QueryParameter(name="createdBefore", format="date-time")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description="Jobs per page.")] = DEFAULT_PAGE,
        cursor: Annotated[str | None, QueryParameter(description="`nextCursor` of the previous page.")] = None,
    ) -> Response[JobListOut]:
        selection = JobSelection(
            owner_id=owner_id,
            statuses=None if not status else frozenset(status),
            report_id=report_id,
            created_after=_moment("createdAfter", created_after),
            created_before=_moment("createdBefore", created_before),
        )
        after = None if cursor is None else decode_cursor(cursor)
        page = await services.use_cases.list_jobs.execute(
            ListJobsQuery(
                user_id=request.user.user_id,
                is_admin=request.user.is_admin,
                selection=selection,
                limit=limit,
                after=after,
            )
        )
        items = [
            job_status_out(job, show_detail=request.user.is_admin, **job_urls(request, job.id)) for job in page.items
        ]
        next_cursor = None if page.next is None else encode_cursor(page.next)
        headers = {} if next_cursor is None else {"Link": f'<{_with_cursor(request, next_cursor)}>; rel="next"'}
        return Response(JobListOut(items=items, next_cursor=next_cursor), headers=headers)

    @get(
        "/{jobId:str}",
        name=JOB_STATUS_ROUTE,
        summary="Read a job's status",
        description=getdoc(GetJobStatus),
        response_headers=[RETRY_AFTER],
        responses=problem_responses(400, 401, 404, 422, 503),
    )
    async def status(
        self,
        request: AuthenticatedRequest,
        job_id: JobId,
        services: NamedDependency[ApiServices],
        wait: Annotated[
            float,
            QueryParameter(
                description=f"Seconds (0-{MAX_WAIT_SECONDS}) to wait for the job to finish: the answer comes as soon "
                "as it is terminal, or when the time is up with its status then. Outside the range: 422.",
                schema_extra={"minimum": 0, "maximum": MAX_WAIT_SECONDS},  # checked by the use case: 422, not 400
            ),
        ] = 0,
    ) -> Response[JobStatusOut]:
        query = replace(_job_query(request, job_id), wait_seconds=wait)
        job = await services.use_cases.get_status.execute(query)
        return _status_response(request, job, services.poll_after_seconds)

    @post(
        "/{jobId:str}/cancel",
        status_code=202,
        summary="Cancel a job",
        description="A Queued job becomes Cancelled at once; a Running one is aborted and its worker stops "
        "within seconds. Answers with the job (status body). A job that has already finished cannot be "
        "cancelled: 409 with its `jobStatus`. A cancelled job never has a result.",
        response_headers=[RETRY_AFTER],
        responses=problem_responses(400, 401, 404, 409, 503),
    )
    async def cancel(
        self,
        request: AuthenticatedRequest,
        job_id: JobId,
        services: NamedDependency[ApiServices],
    ) -> Response[JobStatusOut]:
        job = await services.use_cases.cancel.execute(_job_query(request, job_id))
        return _status_response(request, job, services.poll_after_seconds, status_code=202)

    @get(
        "/{jobId:str}" + RESULT_SUFFIX,
        name=JOB_RESULT_ROUTE,
        summary="Download a job's result",
        description=getdoc(GetJobResult),
        responses=_RESULT_RESPONSES,
    )
    async def result(
        self,
        request: AuthenticatedRequest,
        job_id: JobId,
        services: NamedDependency[ApiServices],
        if_none_match: IfNoneMatch = None,
        byte_range: RangeHeader = None,
        if_range: IfRange = None,
    ) -> Response[Any]:
        result = await services.use_cases.get_result.execute(_job_query(request, job_id))
        status, headers, part = _answer(result, if_none_match, byte_range, if_range)
        if status == 304:
            return Response(None, status_code=status, headers=headers)
        if services.result_link_lifetime is not None:
            url = await result.link(services.result_link_lifetime)
            if url is not None:  # the store serves the bytes (and the range, which the client sends it again)
                return Response(
                    b"",
                    status_code=303,
                    media_type="text/plain",
                    headers={"Location": url, "Cache-Control": "no-store"},
                )
        content = result.content() if part is None else result.content(part.start, part.length)
        return Stream(content, status_code=status, headers=headers)

    @head(
        "/{jobId:str}" + RESULT_SUFFIX,
        summary="A job's result's headers, without the body",
        description="What GET answers (200, 206, 304 or a problem status), with no body: the size, type, name and "
        "ETag of the artifact, to decide on a (ranged) download.",
        responses=_RESULT_RESPONSES,
    )
    async def result_head(
        self,
        request: AuthenticatedRequest,
        job_id: JobId,
        services: NamedDependency[ApiServices],
        if_none_match: IfNoneMatch = None,
        byte_range: RangeHeader = None,
        if_range: IfRange = None,
    ) -> Response[None]:
        result = await services.use_cases.get_result.execute(_job_query(request, job_id))
        status, headers, _ = _answer(result, if_none_match, byte_range, if_range)
        return Response(None, status_code=status, headers=headers)


def _answer(
    result: JobResult, if_none_match: str | None, byte_range: str | None, if_range: str | None
) -> tuple[int, dict[str, str], ByteRange | None]:
    """What GET and HEAD answer of a result: 304 when the client's copy is current, 206 with one range of it, or
    200 with the whole; the status, the headers and the range (None: the whole)."""
    headers = _result_headers(result)
    if _etag_matches(if_none_match, headers["ETag"]):
        return 304, _validators(headers), None
    part = _part(result, byte_range, if_range, headers["ETag"])
    if part is None:
        return 200, headers, None
    headers.update({"Content-Range": part.content_range, "Content-Length": str(part.length)})
    return 206, headers, part


def _result_headers(result: JobResult) -> dict[str, str]:
    return {
        "ETag": f'"{result.artifact.sha256}"',
        "Cache-Control": "private",
        "Accept-Ranges": "bytes",
        "Content-Type": result.job.content_type,
        "Content-Length": str(result.artifact.size),
        "Content-Disposition": f'attachment; filename="{result.job.filename}"',
    }


def _validators(headers: dict[str, str]) -> dict[str, str]:
    """What a 304 repeats of the 200 it stands for."""
    return {name: headers[name] for name in ("ETag", "Cache-Control")}


def _part(result: JobResult, byte_range: str | None, if_range: str | None, etag: str) -> ByteRange | None:
    """The range to send, or None for the whole artifact; a range past its end is a 416."""
    if not range_applies(if_range, etag):
        return None
    try:
        return requested_range(byte_range, result.artifact.size)
    except RangeNotSatisfiable as exc:
        raise HTTPException(
            status_code=416,
            detail=f"The range starts past the end of the result's {exc.size} bytes.",
            headers={"Content-Range": f"bytes */{exc.size}"},
        ) from None
