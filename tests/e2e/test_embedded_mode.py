"""`reportgen serve` alone, as a new user meets it after `make run`: SQLite, in-process worker, demo reports."""

from __future__ import annotations

import io
import re
import secrets
import time
from pathlib import Path

import openpyxl
import pypdf
import pytest

from tests.e2e.conftest import Deployment, Process, _base_env, wait_for_status
from tests.loopback import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def printed_token(process: Process) -> str:
    deadline = time.monotonic() + 10
    while not (match := re.search(r"TOKEN=(eyJ[\w.-]+)", process.output())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert match, process.output()
    return match.group(1)


def test_printed_token_and_curl_flow_produce_the_demo_report(embedded: tuple[Deployment, Process]) -> None:
    deployment, process = embedded
    banner = process.output()
    assert "curl" in banner
    with deployment.client(printed_token(process)) as client:
        reports = client.get("/api/v1/reports").json()
        assert len(reports) >= 2
        summary = next(r for r in reports if r["name"] == "Sales by region")
        job = client.post(
            f"/api/v1/reports/{summary['id']}/generate", json={"parameters": {"region": "EU"}, "format": "csv"}
        ).json()
        status = client.get(job["statusUrl"], params={"wait": "30"}, timeout=40).json()  # the in-process signal
        assert status["status"] == "Succeeded", status
        lines = client.get(job["resultUrl"]).text.splitlines()
        assert lines[0] == "region,product,orders,units,revenue"
        assert len(lines) > 1
        assert all(line.startswith("EU,") for line in lines[1:])
        metrics = client.get("/metrics").text
        assert 'reportgen_job_runs_total{outcome="succeeded"}' in metrics, "the embedded worker's jobs are counted"
        assert "reportgen_jobs_submitted_total" in metrics


def test_the_demo_charts_come_out_as_pdfs_and_spreadsheets(embedded: tuple[Deployment, Process]) -> None:
    deployment, process = embedded
    with deployment.client(printed_token(process)) as client:
        reports = {r["name"]: r for r in client.get("/api/v1/reports").json()}
        results = {}
        for name, fmt in [("Revenue by region", "pdf"), ("Daily revenue", "pdf"), ("Revenue by region", "xlsx")]:
            job = client.post(f"/api/v1/reports/{reports[name]['id']}/generate", json={"format": fmt}).json()
            assert wait_for_status(client, job["jobId"], {"Succeeded", "Failed"})["status"] == "Succeeded"
            results[name, fmt] = client.get(job["resultUrl"]).content

    assert reports["Revenue by region"]["chart"] == {"type": "bar", "x": "region", "y": ["revenue"]}
    bar = pypdf.PdfReader(io.BytesIO(results["Revenue by region", "pdf"])).pages[0].extract_text()
    line = pypdf.PdfReader(io.BytesIO(results["Daily revenue", "pdf"])).pages[0].extract_text()
    assert "Bar chart of revenue by region" in bar
    assert "Line chart of revenue by day" in line
    [sheet] = openpyxl.load_workbook(io.BytesIO(results["Revenue by region", "xlsx"])).worksheets
    header, *rows = [[cell.value for cell in row] for row in sheet.rows]
    assert header == ["region", "revenue", "units", "orders"]
    assert {row[0] for row in rows} == {"EU", "US", "APAC", "LATAM"}
    assert all(isinstance(row[1], float | int) for row in rows)


def test_an_operators_own_secret_mints_no_admin_token_at_start(tmp_path: Path) -> None:
    port = free_port()
    env = _base_env(tmp_path) | {"REPORTGEN_JWT_SECRET": secrets.token_urlsafe(40)}
    deployment = Deployment(f"http://127.0.0.1:{port}", env, tmp_path)
    process = deployment.start("embedded", "serve", "--port", str(port))
    try:
        deployment.wait_ready(timeout=60)
        banner = process.output()
        assert "reportgen token --sub" in banner, "the banner says how to get a token"
        assert "eyJ" not in banner, "no token is printed"
        assert not (tmp_path / "var" / "dev-jwt-secret").exists()
        with deployment.client(deployment.token("dev", "admin")) as client:
            assert client.get("/api/v1/reports").status_code == 200, "the operator's secret signs tokens"
    finally:
        deployment.stop_all()


def test_email_report_is_refused_and_the_slow_demo_report_reports_progress(
    embedded: tuple[Deployment, Process],
) -> None:
    deployment, process = embedded
    with deployment.client(printed_token(process)) as client:
        reports = {r["name"]: r["id"] for r in client.get("/api/v1/reports").json()}
        refused = client.post(f"/api/v1/reports/{reports['Weekly email digest']}/generate")
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")
        job = client.post(f"/api/v1/reports/{reports['Order lines export']}/generate").json()
        running = wait_for_status(client, job["jobId"], {"Running", "Succeeded", "Failed"})
        seen = [running["progress"]]
        while (status := client.get(job["statusUrl"]).json())["status"] == "Running":
            seen.append(status["progress"])
            time.sleep(0.2)
        assert status["status"] == "Succeeded", status
        assert seen == sorted(seen)
