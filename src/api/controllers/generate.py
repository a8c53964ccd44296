"""Start a report job: `POST /api/v1/reports/{reportId}/generate`, optionally with an Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass
from inspect import getdoc

from litestar import Response, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.spec import Operation, RequestBody
from litestar.params import JSONBody

from api.auth import AuthenticatedRequest
from api.controllers.jobs import RETRY_AFTER, job_urls, status_url_base
from api.errors import problem_responses
from api.middleware import request_id_of
from api.schemas import GenerateIn, IdempotencyKey, JobAccepted, JsonBody, ReportId
from api.services import ApiServices
from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from domain.jobs import JobStatus

REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass
class _OptionalBodyOperation(Operation):
    """Litestar marks every request body required; the generate body may be left out."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


@post(
    "/api/v1/reports/{reportId:str}/generate",
    status_code=202,
    dto=JsonBody[GenerateIn],
    return_dto=None,
    operation_class=_OptionalBodyOperation,
    tags=["jobs"],
    summary="Generate a report",
    description=getdoc(InitiateAsynchronousReportJob),
    response_headers=[
        ResponseHeader(name="Location", documentation_only=True, description="The statusUrl."),
        RETRY_AFTER,
        ResponseHeader(
            name=REPLAYED_HEADER,
            documentation_only=True,
            description="`true` when an earlier request with the same Idempotency-Key created the job: "
            "the answer is the first one again (same jobId). Absent otherwise.",
        ),
    ],
    responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 503),
)
async def generate_report(
    request: AuthenticatedRequest,
    report_id: ReportId,
    services: NamedDependency[ApiServices],
    data: JSONBody[GenerateIn | None] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response[JobAccepted]:
    body = data if data is not None else GenerateIn()
    command = InitiateReportJob(
        report_id=report_id,
        user_id=request.user.user_id,
        parameters=body.parameters,
        format=body.format,
        request_id=request_id_of(request.scope),
        idempotency_key=idempotency_key,
        callback_url=body.callback_url,
        status_url_base=status_url_base(request),
    )
    initiated = await services.use_cases.initiate.execute(command)
    urls = job_urls(request, initiated.job_id)
    headers = {"Location": urls["status_url"], "Retry-After": str(services.poll_after_seconds)}
    if initiated.replayed:
        headers[REPLAYED_HEADER] = "true"
    else:
        services.metrics.jobs_submitted.inc()
    accepted = JobAccepted(job_id=initiated.job_id, status=JobStatus.QUEUED, **urls)
    return Response(accepted, status_code=202, headers=headers)
