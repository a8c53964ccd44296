"""What the HTTP layer calls: the application's use cases, listed once (`UseCases`), and `ApiServices`, the one
dependency that every handler takes. One, because Litestar resolves a single dependency inline but two or more in a
task group of their own, on every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from api.metrics import ApiMetrics
from application.cancel_job import CancelJob
from application.initiate_report_job import InitiateAsynchronousReportJob
from application.job_limits import GetJobLimit, SetJobLimit
from application.job_queries import GetJobResult, GetJobStatus, ListJobs
from application.manage_reports import CreateReport, DeleteReport, GetReport, ListReports, UpdateReport


@dataclass(frozen=True, slots=True, kw_only=True)
class UseCases:
    """Every use case the API serves, built once by the composition root (or by tests, on fakes)."""

    initiate: InitiateAsynchronousReportJob
    get_status: GetJobStatus
    list_jobs: ListJobs
    get_result: GetJobResult
    cancel: CancelJob
    create_report: CreateReport
    update_report: UpdateReport
    delete_report: DeleteReport
    get_report: GetReport
    list_reports: ListReports
    get_job_limit: GetJobLimit
    set_job_limit: SetJobLimit


@dataclass(frozen=True, slots=True)
class ApiServices:
    """The use cases, with what the handlers add to them: the HTTP metrics and the `Retry-After` of unfinished
    jobs."""

    use_cases: UseCases
    metrics: ApiMetrics
    poll_after_seconds: int
    result_link_lifetime: timedelta | None = None
    """Downloads are 303 redirects to the store's own URL, valid this long; None: they stream through the API."""
