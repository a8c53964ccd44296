"""A typed Python client of the reportgen API (httpx and the standard library only).

from reportgen_client import Client

with Client() as client:  # REPORTGEN_URL, REPORTGEN_TOKEN
    job = client.submit(report_id, {"region": "EU"}, "csv")
    done = client.wait_for(job.job_id)
    path = client.download(done.job_id)
"""

from reportgen_client.client import DEFAULT_URL, TOKEN_ENV, URL_ENV, Client
from reportgen_client.errors import (
    ApiError,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    DownloadError,
    NotFound,
    ReportgenError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from reportgen_client.models import Job, JobError, Report, ReportParameter, Submitted

__all__ = [
    "DEFAULT_URL",
    "TOKEN_ENV",
    "URL_ENV",
    "ApiError",
    "Client",
    "ConfigurationError",
    "Conflict",
    "ConnectionFailed",
    "DownloadError",
    "Job",
    "JobError",
    "NotFound",
    "Report",
    "ReportParameter",
    "ReportgenError",
    "Submitted",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
]
