"""What can go wrong, as exceptions a script can tell apart. Every one derives from `ReportgenError`."""

from __future__ import annotations

from typing import Any

import httpx

from reportgen_client.models import Job

PROBLEM_TYPE_PREFIX = "urn:reportgen:problem:"


class ReportgenError(Exception):
    """Base of every error this client raises."""


class ConfigurationError(ReportgenError):
    """No URL or token to talk to the server with, or one that cannot be used."""


class ApiError(ReportgenError):
    """The server answered with a problem (RFC 9457 `application/problem+json`), or with an unexpected status.

    `code` is the problem's slug (`report-not-found`, `too-many-active-jobs`, ...), or for a plain HTTP error the
    status phrase in the same spelling (`not-found`, `unauthorized`); `detail` says what went wrong, `errors`
    names the offending fields of a 400/422, `job_status` is the job's status on a 409 about a job."""

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body: dict[str, Any] = body or {}

    @property
    def errors(self) -> list[dict[str, str]]:
        return list(self.body.get("errors", []))

    @property
    def job_status(self) -> str | None:
        return self.body.get("jobStatus")

    @property
    def request_id(self) -> str | None:
        return self.body.get("requestId")

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        body: dict[str, Any] = {}
        if response.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else {}
        problem_type = str(body.get("type", ""))
        if problem_type.startswith(PROBLEM_TYPE_PREFIX):
            code = problem_type.removeprefix(PROBLEM_TYPE_PREFIX)
        else:
            code = response.reason_phrase.lower().replace(" ", "-") or str(response.status_code)
        detail = str(body.get("detail") or body.get("title") or response.reason_phrase)
        for field_error in body.get("errors", []):
            named = f"{field_error.get('field')}: {field_error.get('message')}"
            detail += "" if named in detail else f"; {named}"
        return cls(response.status_code, code, detail, body)


class NotFound(ApiError):
    """404: no such report or job, or one the caller may not see."""


class Unauthorized(ApiError):
    """401 (no token, or a bad one) or 403 (the token's user may not do this)."""


class Conflict(ApiError):
    """409: the job is not in a state for this (a result not ready yet, a cancel of a finished job)."""


class Unavailable(ApiError):
    """429 or 503 that stayed so after the client's retries (`Retry-After` respected)."""


class ConnectionFailed(ReportgenError):
    """The server could not be reached, or the connection broke before an answer came (after the retries that
    were safe to make)."""


class WaitTimeout(ReportgenError):
    """The job did not finish within the time `wait_for` was given; `job` is its last known status."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.job_id} is still {job.status} ({job.progress} %)")
        self.job = job


class DownloadError(ReportgenError):
    """The result could not be downloaded whole: the connection kept dropping, or the bytes that arrived do not
    match the artifact's size or SHA-256 (its ETag). A partial file is kept to resume from."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: Unavailable,
    503: Unavailable,
}


def api_error(response: httpx.Response) -> ApiError:
    """The typed error for a response that is not a success."""
    return _BY_STATUS.get(response.status_code, ApiError).from_response(response)
