"""Report configurations: every authenticated user reads them, admins write them."""

from __future__ import annotations

from inspect import getdoc

from litestar import Controller, Response, delete, get, post, put
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import JSONBody
from msgspec import UNSET

from api.auth import AuthenticatedRequest, admin_only
from api.errors import problem_responses
from api.schemas import JsonBody, ParameterOut, ReportId, ReportIn, ReportOut, chart_out, utc
from api.services import ApiServices
from application.manage_reports import CreateReport, DeleteReport, UpdateReport
from domain.reports import ReportConfiguration

REPORT_ROUTE = "report"
_LOCATION = ResponseHeader(name="Location", documentation_only=True, description="URL of the new report.")


def report_out(report: ReportConfiguration, *, show_query: bool) -> ReportOut:
    """Report SQL is shown to admins only: it can reveal table names and business rules that a user
    who merely runs reports has no need to see, and admins are the ones who write it."""
    parameters = [
        ParameterOut(name=p.name, type=p.type, required=p.required, default=p.default) for p in report.parameters
    ]
    return ReportOut(
        id=report.id,
        name=report.name,
        description=report.description,
        query=report.query if show_query else UNSET,
        parameters=parameters,
        formats=list(report.formats),
        delivery_target=report.delivery_target,
        async_enabled=report.async_enabled,
        chart=chart_out(report.chart),
        csv_formula_escape=report.csv_formula_escape,
        created_at=utc(report.created_at),
        updated_at=utc(report.updated_at),
    )


class ReportsController(Controller):
    path = "/api/v1/reports"
    tags = ("reports",)

    @post(
        guards=[admin_only],
        status_code=201,
        dto=JsonBody[ReportIn],
        return_dto=None,
        summary="Create a report",
        description=getdoc(CreateReport),
        response_headers=[_LOCATION],
        responses=problem_responses(400, 401, 403, 413, 422, 503),
    )
    async def create(
        self, request: AuthenticatedRequest, data: JSONBody[ReportIn], services: NamedDependency[ApiServices]
    ) -> Response[ReportOut]:
        report = await services.use_cases.create_report.execute(data.to_definition())
        location = request.url_for(REPORT_ROUTE, reportId=str(report.id))
        return Response(report_out(report, show_query=True), status_code=201, headers={"Location": location})

    @get(summary="List reports", responses=problem_responses(401, 503))
    async def list_all(self, request: AuthenticatedRequest, services: NamedDependency[ApiServices]) -> list[ReportOut]:
        """Every live report, by name. `query` is included for admins only."""
        return [
            report_out(r, show_query=request.user.is_admin) for r in await services.use_cases.list_reports.execute()
        ]

    @get("/{reportId:str}", name=REPORT_ROUTE, summary="Read a report", responses=problem_responses(400, 401, 404, 503))
    async def read(
        self,
        request: AuthenticatedRequest,
        report_id: ReportId,
        services: NamedDependency[ApiServices],
    ) -> ReportOut:
        """One live report. `query` is included for admins only."""
        return report_out(await services.use_cases.get_report.execute(report_id), show_query=request.user.is_admin)

    @put(
        "/{reportId:str}",
        guards=[admin_only],
        dto=JsonBody[ReportIn],
        return_dto=None,
        summary="Replace a report",
        description=getdoc(UpdateReport),
        responses=problem_responses(400, 401, 403, 404, 413, 422, 503),
    )
    async def replace(
        self,
        report_id: ReportId,
        data: JSONBody[ReportIn],
        services: NamedDependency[ApiServices],
    ) -> ReportOut:
        return report_out(
            await services.use_cases.update_report.execute(report_id, data.to_definition()), show_query=True
        )

    @delete(
        "/{reportId:str}",
        guards=[admin_only],
        summary="Delete a report",
        description=getdoc(DeleteReport),
        responses=problem_responses(400, 401, 403, 404, 503),
    )
    async def remove(self, report_id: ReportId, services: NamedDependency[ApiServices]) -> None:
        await services.use_cases.delete_report.execute(report_id)
