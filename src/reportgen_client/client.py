"""`Client`: the reportgen API for scripts, over httpx. Configured by arguments, else `REPORTGEN_URL` and
`REPORTGEN_TOKEN`."""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import httpx

from reportgen_client.download import ProgressCallback, download_result
from reportgen_client.errors import ConfigurationError, ConnectionFailed, WaitTimeout, api_error
from reportgen_client.headers import retry_after
from reportgen_client.models import Job, Report, Submitted

URL_ENV, TOKEN_ENV = "REPORTGEN_URL", "REPORTGEN_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"
WAIT_STEP_SECONDS = 2
"""How long one status request asks the server to hold the answer (`?wait=`): short, so progress keeps moving."""
RETRYABLE = frozenset({429, 503})
MAX_RETRY_AFTER_SECONDS = 60.0

Sleep = Callable[[float], None]
Clock = Callable[[], float]


class Client:
    """The reportgen API. Use it as a context manager (or call `close()`); every method may raise a
    `reportgen_client.ReportgenError`: `ApiError` (and its kinds `NotFound`, `Unauthorized`, `Conflict`,
    `Unavailable`) for a problem the server answered, `ConnectionFailed`, `WaitTimeout`, `DownloadError`.

    Answers 429 and 503 are retried after their `Retry-After` (`retries` times); so are broken connections of
    requests that are safe to repeat (reads, and generate, which carries an `Idempotency-Key`)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        env: Mapping[str, str] = os.environ,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        url = url or env.get(URL_ENV) or DEFAULT_URL
        token = token or env.get(TOKEN_ENV)
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigurationError(f"{url!r} is not an http(s) URL of a reportgen server (--url or {URL_ENV})")
        if not token:
            raise ConfigurationError(
                f"no token: pass one (--token) or set {TOKEN_ENV}; in development `reportgen token --sub <you>` "
                "prints one"
            )
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._retries = retries
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport or httpx.HTTPTransport(retries=2),  # connects that failed sent nothing: safe
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- reports ------------------------------------------------------------------------------------

    def reports(self) -> list[Report]:
        """Every report the caller may generate or read."""
        return [Report.from_json(body) for body in self.request("GET", "/api/v1/reports").json()]

    def report(self, report_id: str) -> Report:
        return Report.from_json(self.request("GET", f"/api/v1/reports/{report_id}").json())

    # -- jobs ---------------------------------------------------------------------------------------

    def submit(
        self,
        report_id: str,
        parameters: Mapping[str, Any] | None = None,
        format: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Start a job. The request carries an `Idempotency-Key` (a new UUID unless given), so it is retried
        safely: a repeat answers with the same job."""
        body: dict[str, Any] = {}
        if parameters:
            body["parameters"] = dict(parameters)
        if format is not None:
            body["format"] = format
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = self.request(
            "POST", f"/api/v1/reports/{report_id}/generate", json=body, headers=headers, repeatable=True
        )
        accepted = response.json()
        return Submitted(
            job_id=accepted["jobId"],
            status=accepted["status"],
            status_url=accepted["statusUrl"],
            result_url=accepted["resultUrl"],
            replayed=response.headers.get("idempotent-replayed", "").lower() == "true",
        )

    def job(self, job_id: str, *, wait: int = 0) -> Job:
        """The job's status; with `wait` (0-60 s) the server answers as soon as the job is terminal, or after
        that long (a server without that feature answers at once)."""
        return self._status(job_id, wait)[0]

    def wait_for(
        self, job_id: str, *, timeout: float | None = None, on_update: Callable[[Job], None] | None = None
    ) -> Job:
        """Follow the job until it is terminal and return it (whatever its status); `on_update` sees every status
        read. Each request asks the server to wait up to WAIT_STEP_SECONDS; an unfinished answer that comes
        sooner (a server that does not wait) is followed by a pause of its `Retry-After`, so this never spins.
        Raises `WaitTimeout` after `timeout` seconds."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            left = math.inf if deadline is None else deadline - self._clock()
            asked = WAIT_STEP_SECONDS if left >= WAIT_STEP_SECONDS else max(0, math.ceil(left))
            started = self._clock()
            job, pause = self._status(job_id, asked)
            if on_update is not None:
                on_update(job)
            if job.is_terminal:
                return job
            left = math.inf if deadline is None else deadline - self._clock()
            if left <= 0:
                raise WaitTimeout(job)
            if self._clock() - started < asked:
                self._sleep(min(asked if pause is None else pause, left))

    def jobs(
        self,
        *,
        status: Sequence[str] = (),
        report_id: str | None = None,
        owner_id: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int = 20,
    ) -> Iterator[Job]:
        """The caller's jobs (an admin's: everyone's, or `owner_id`'s), newest first, filtered as the API allows;
        pages are fetched as the iteration reaches them, following the `Link: <...>; rel="next"` header."""
        params: list[tuple[str, str]] = [("status", s) for s in status]
        for name, value in (
            ("reportId", report_id),
            ("ownerId", owner_id),
            ("createdAfter", created_after),
            ("createdBefore", created_before),
        ):
            if value is not None:
                params.append((name, value.isoformat() if isinstance(value, datetime) else value))
        params.append(("limit", str(page_size)))
        target: str | None = "/api/v1/jobs?" + urlencode(params)
        while target is not None:
            response = self.request("GET", target)
            yield from (Job.from_json(body) for body in response.json()["items"])
            target = self._next_page(response)

    @staticmethod
    def _next_page(response: httpx.Response) -> str | None:
        """The next page on this client's server: the `Link` URL's query on the list's path (the token is never
        sent to a host the server names)."""
        link = response.links.get("next")
        return None if link is None else f"{response.url.path}?{urlsplit(link['url']).query}"

    def cancel(self, job_id: str) -> Job:
        """Cancel a Queued or Running job; `Conflict` (409) when it has already finished."""
        return Job.from_json(self.request("POST", f"/api/v1/jobs/{job_id}/cancel").json())

    def download(
        self, job_id: str, path: str | Path | None = None, *, on_progress: ProgressCallback | None = None
    ) -> Path:
        """Download a Succeeded job's result to `path` (default: the server's file name, in the current directory)
        and return where it is. A dropped connection is resumed (`Range`, `If-Range`) from what arrived, kept in
        `<path>.part`; the file is complete when its size and SHA-256 match the artifact's."""
        return download_result(
            self._http, f"/api/v1/jobs/{job_id}/result", job_id, path, on_progress=on_progress, sleep=self._sleep
        )

    # -- plumbing -----------------------------------------------------------------------------------

    def _status(self, job_id: str, wait: int) -> tuple[Job, float | None]:
        params = {"wait": str(wait)} if wait > 0 else None
        response = self.request("GET", f"/api/v1/jobs/{job_id}", params=params, timeout=self._timeout + wait)
        return Job.from_json(response.json()), retry_after(response)

    def request(self, method: str, path: str, *, repeatable: bool | None = None, **kwargs: Any) -> httpx.Response:
        """One API call, retried on 429/503 after `Retry-After`, and on a broken connection when `repeatable`
        (default: GET and HEAD). Returns a success; raises the typed error of anything else."""
        repeatable = method in ("GET", "HEAD") if repeatable is None else repeatable
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if not repeatable or last or isinstance(exc, httpx.ConnectError):  # the transport retried connects
                    raise ConnectionFailed(f"{method} {self.url}{path}: {str(exc) or type(exc).__name__}") from exc
                self._sleep(0.5 * 2**attempt)
                continue
            if response.status_code in RETRYABLE and not last:
                self._sleep(min(retry_after(response) or 1.0, MAX_RETRY_AFTER_SECONDS))
                continue
            if response.is_error:
                raise api_error(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover
