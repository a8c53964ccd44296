"""The main flow (generate, poll, download) and its failure paths through real processes: `reportgen serve` +
`reportgen worker` on PostgreSQL and Redis."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openpyxl
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pypdf
import pytest

from tests.e2e.conftest import BIN, Deployment, deployed, flushed_redis, production_env, wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SERIES = {
    "name": "Series",
    "description": "n and its square, up to a limit",
    "query": "SELECT n, n * n AS square, 'row ' || n AS label FROM generate_series(1, :upto) AS n ORDER BY n",
    "parameters": [{"name": "upto", "type": "integer", "required": False, "default": 5}],
    "formats": ["csv", "json", "ndjson", "xlsx", "pdf", "parquet"],
    "deliveryTarget": "API_RESPONSE",
    "asyncEnabled": True,
    "chart": {"type": "bar", "x": "label", "y": ["square"]},
}


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory, e2e_database_url: str, e2e_reporting_url: str
) -> Iterator[Deployment]:
    """One deployment for the tests of this module (starting one takes seconds): each test creates its own reports
    and reads only its own jobs, and none changes the deployment."""
    tmp = tmp_path_factory.mktemp("production")
    with (
        flushed_redis() as redis_url,
        deployed(tmp, production_env(tmp, e2e_database_url, e2e_reporting_url, redis_url)) as deployment,
    ):
        yield deployment


def create_report(deployment: Deployment, definition: dict[str, Any]) -> str:
    with deployment.client(deployment.token("admin-1", "admin")) as admin:
        response = admin.post("/api/v1/reports", json=definition)
    assert response.status_code == 201, response.text
    report_id: str = response.json()["id"]
    return report_id


def generate(client: httpx.Client, report_id: str, body: dict[str, Any] | None = None) -> httpx.Response:
    response = client.post(f"/api/v1/reports/{report_id}/generate", json=body)
    assert response.status_code == 202, response.text
    return response


def test_report_is_accepted_polled_and_downloaded_in_every_format(production: Deployment) -> None:
    report_id = create_report(production, SERIES)
    with production.client(production.token("alice")) as alice:
        accepted = generate(alice, report_id, {"parameters": {"upto": 3}, "format": "csv"})
        body = accepted.json()
        assert accepted.headers["Location"] == body["statusUrl"]
        assert body["statusUrl"].startswith(production.base_url)
        assert int(accepted.headers["Retry-After"]) >= 1
        status = wait_for_status(alice, body["jobId"], {"Succeeded", "Failed"})
        assert (status["status"], status["progress"], status["attempts"]) == ("Succeeded", 100, 1)

        result = alice.get(body["resultUrl"])
        assert result.status_code == 200
        assert result.headers["content-type"].startswith("text/csv")
        assert "attachment" in result.headers["content-disposition"]
        assert list(csv.reader(io.StringIO(result.text))) == [
            ["n", "square", "label"],
            ["1", "1", "row 1"],
            ["2", "4", "row 2"],
            ["3", "9", "row 3"],
        ]

        as_json = generate(alice, report_id, {"format": "json"}).json()
        wait_for_status(alice, as_json["jobId"], {"Succeeded", "Failed"})
        rows = alice.get(as_json["resultUrl"]).json()
        assert rows[-1] == {"n": 5, "square": 25, "label": "row 5"}

        as_ndjson = generate(alice, report_id, {"parameters": {"upto": 2}, "format": "ndjson"}).json()
        wait_for_status(alice, as_ndjson["jobId"], {"Succeeded", "Failed"})
        lines = alice.get(as_ndjson["resultUrl"])
        assert lines.headers["content-type"] == "application/x-ndjson"
        assert lines.headers["content-disposition"].endswith('.ndjson"')
        assert [json.loads(line) for line in lines.text.splitlines()] == [
            {"n": 1, "square": 1, "label": "row 1"},
            {"n": 2, "square": 4, "label": "row 2"},
        ]

        downloads = {fmt: download(alice, report_id, fmt) for fmt in ("xlsx", "pdf", "parquet")}

    [sheet] = openpyxl.load_workbook(io.BytesIO(downloads["xlsx"])).worksheets
    assert [[c.value for c in row] for row in sheet.rows] == [
        ["n", "square", "label"],
        *([n, n * n, f"row {n}"] for n in range(1, 6)),
    ]
    pdf_text = pypdf.PdfReader(io.BytesIO(downloads["pdf"])).pages[0].extract_text()
    assert all(text in pdf_text for text in ("Series", "upto = 5", "square", "row 5", "Bar chart of square by label"))
    assert pq.read_table(io.BytesIO(downloads["parquet"])).to_pydict() == {
        "n": [1, 2, 3, 4, 5],
        "square": [1, 4, 9, 16, 25],
        "label": [f"row {n}" for n in range(1, 6)],
    }

    with production.client(production.token("mallory")) as mallory:
        assert mallory.get(body["statusUrl"]).status_code == 404
        assert mallory.get(body["resultUrl"]).status_code == 404


def download(client: httpx.Client, report_id: str, fmt: str) -> bytes:
    """Generate the report in `fmt`, wait for it, and download it, checking its media type and file name."""
    accepted = generate(client, report_id, {"format": fmt}).json()
    status = wait_for_status(client, accepted["jobId"], {"Succeeded", "Failed"})
    assert status["status"] == "Succeeded", status
    result = client.get(accepted["resultUrl"])
    assert result.headers["content-type"] == MEDIA_TYPES[fmt]
    assert result.headers["content-disposition"].endswith(f'.{fmt}"')
    return result.content


MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
    "parquet": "application/vnd.apache.parquet",
}


def test_request_id_of_the_generate_call_appears_in_the_worker_log(production: Deployment) -> None:
    report_id = create_report(production, SERIES)
    with production.client(production.token("alice")) as alice:
        response = alice.post(f"/api/v1/reports/{report_id}/generate", headers={"X-Request-ID": "trace-e2e-42"})
        assert response.headers["X-Request-ID"] == "trace-e2e-42"
        wait_for_status(alice, response.json()["jobId"], {"Succeeded"})
    worker_log = next(p for p in production.processes if p.name == "worker").output()
    lines = [json.loads(line) for line in worker_log.splitlines() if "trace-e2e-42" in line]
    assert any(line.get("job_id") == response.json()["jobId"] for line in lines), worker_log[-2000:]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT 1 / (n - n) AS boom FROM generate_series(1, 3) AS n", "REPORT_QUERY_FAILED"),
        ("SELECT pg_sleep(30)::text AS never", "REPORT_TIMEOUT"),
        ("WITH gone AS (DELETE FROM reports RETURNING id) SELECT id FROM gone", "REPORT_QUERY_FAILED"),
    ],
    ids=["division-by-zero", "timeout", "write-attempt"],
)
def test_failing_report_ends_failed_with_a_code_and_has_no_result(
    production: Deployment, query: str, code: str
) -> None:
    report_id = create_report(production, {**SERIES, "query": query, "parameters": []})
    with production.client(production.token("alice")) as alice:
        job = generate(alice, report_id).json()
        status = wait_for_status(alice, job["jobId"], {"Succeeded", "Failed"})
        assert status["status"] == "Failed"
        assert status["error"]["code"] == code
        assert "Traceback" not in status["error"]["message"]
        assert "detail" not in status["error"], "the database's message is for admins"
        result = alice.get(job["resultUrl"])
        assert result.status_code == 409
        assert result.json()["jobStatus"] == "Failed"
        assert alice.get(f"/api/v1/reports/{report_id}").status_code == 200, "a report query changed nothing"


def test_slow_report_is_seen_running_with_rising_progress(production: Deployment) -> None:
    slow = {
        **SERIES,
        # About 2 s (100 sleeps of 20 ms; pg_sleep(0.001) takes 2 ms here), well within the 5 s time limit.
        "query": "SELECT n, pg_sleep(CASE WHEN n % 30 = 0 THEN 0.02 ELSE 0 END)::text AS pause"
        " FROM generate_series(1, 3000) AS n",
        "parameters": [],
    }
    report_id = create_report(production, slow)
    with production.client(production.token("alice")) as alice:
        job = generate(alice, report_id).json()
        running = wait_for_status(alice, job["jobId"], {"Running"}, timeout=10)
        assert running["status"] == "Running"
        assert running["startedAt"] is not None
        assert alice.get(job["statusUrl"]).headers.get("Retry-After")
        seen = [running["progress"]]
        while (status := alice.get(job["statusUrl"]).json())["status"] == "Running":
            seen.append(status["progress"])
        assert status["status"] == "Succeeded"
        assert seen == sorted(seen), "progress never decreases"
        assert max(seen) > 0, "progress was reported while running"
        assert len(alice.get(job["resultUrl"]).text.splitlines()) == 3001


def test_a_waiting_client_is_answered_as_soon_as_the_worker_finishes_the_job(production: Deployment) -> None:
    """`?wait=` across processes: the worker's commit reaches the API's waiter over Redis, not by polling."""
    slow = {**SERIES, "query": "SELECT n, pg_sleep(1)::text AS pause FROM generate_series(1, 1) AS n", "parameters": []}
    report_id = create_report(production, slow)
    with production.client(production.token("alice")) as alice:
        job = generate(alice, report_id).json()
        started = time.monotonic()
        short = alice.get(job["statusUrl"], params={"wait": "0.3"})
        assert short.json()["status"] in {"Queued", "Running"}, "the time was up before the job finished"
        assert short.headers["Retry-After"]
        assert 0.3 <= time.monotonic() - started < 1.0

        waited = alice.get(job["statusUrl"], params={"wait": "30"}, timeout=40)
        elapsed = time.monotonic() - started
        assert waited.json()["status"] == "Succeeded"
        assert 1.0 <= elapsed < 5.0, f"answered {elapsed:.2f} s after submit for a 1 s report"
        assert "Retry-After" not in waited.headers

        immediate = time.monotonic()
        assert alice.get(job["statusUrl"], params={"wait": "30"}).json()["status"] == "Succeeded"
        assert time.monotonic() - immediate < 1.0, "a finished job is answered at once"
        assert alice.get(job["statusUrl"], params={"wait": "61"}).status_code == 422

    with production.client(production.token("bob")) as bob:
        refused = time.monotonic()
        assert bob.get(job["statusUrl"], params={"wait": "30"}).status_code == 404
        assert time.monotonic() - refused < 1.0, "someone else's job is not waited for"


def test_reports_run_as_the_reporting_role_which_cannot_read_reportgens_tables(production: Deployment) -> None:
    report_id = create_report(production, {**SERIES, "query": "SELECT count(*) AS n FROM jobs", "parameters": []})
    with production.client(production.token("admin-1", "admin")) as admin:
        job = generate(admin, report_id).json()
        status = wait_for_status(admin, job["jobId"], {"Succeeded", "Failed"})

    assert (status["status"], status["error"]["code"]) == ("Failed", "REPORT_QUERY_FAILED")
    assert status["error"]["detail"].startswith("permission denied for table jobs")


def test_check_says_what_reports_may_do_and_fails_for_a_role_that_workers_refuse(production: Deployment) -> None:
    fine = production.run("check")
    as_superuser = {k: v for k, v in production.env.items() if k != "REPORTGEN_REPORTING_DATABASE_URL"}
    privileged = subprocess.run(
        [str(BIN / "reportgen"), "check"], env=as_superuser, capture_output=True, text=True, timeout=60, check=False
    )

    assert fine.returncode == 0, fine.stderr
    assert re.search(r"^reports: run as reportgen_e2e_reports_\w+ on \w+, which may only read$", fine.stdout, re.M)
    assert "formats: csv, json, ndjson, xlsx, pdf, parquet\n" in fine.stdout
    assert privileged.returncode == 1
    assert "reports: run as postgres on" in privileged.stdout
    assert "refused by workers" in privileged.stdout
    assert "  - postgres is a superuser" in privileged.stdout


def test_a_worker_whose_reports_would_run_as_a_superuser_refuses_to_start_with_one_line(
    production: Deployment,
) -> None:
    env = {k: v for k, v in production.env.items() if k != "REPORTGEN_REPORTING_DATABASE_URL"}
    worker = subprocess.run(
        [str(BIN / "reportgen"), "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert worker.returncode == 1
    last = worker.stderr.strip().splitlines()[-1]
    assert last.startswith("reportgen worker: refusing to run reports: postgres is a superuser")
    assert "Traceback" not in worker.stderr


def test_a_download_cut_off_midway_resumes_from_where_it_stopped(production: Deployment) -> None:
    report_id = create_report(production, SERIES)
    with production.client(production.token("alice")) as alice:
        accepted = generate(alice, report_id, {"parameters": {"upto": 200_000}, "format": "csv"}).json()
        assert wait_for_status(alice, accepted["jobId"], {"Succeeded", "Failed"})["status"] == "Succeeded"
        whole = alice.get(accepted["resultUrl"]).content
        etag = alice.head(accepted["resultUrl"]).headers["etag"]

        received = bytearray()
        with alice.stream("GET", accepted["resultUrl"]) as response:  # the connection drops after 1 MB
            for chunk in response.iter_raw(65_536):
                received += chunk
                if len(received) >= 1_000_000:
                    break
        rest = alice.get(accepted["resultUrl"], headers={"Range": f"bytes={len(received)}-", "If-Range": etag})

    assert len(whole) > 3_000_000
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {len(received)}-{len(whole) - 1}/{len(whole)}"
    assert bytes(received) + rest.content == whole
