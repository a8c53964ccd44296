"""The metrics of the API process and of the embedded mode's single endpoint, and `promtool check metrics` on them."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry, generate_latest

from api.app import build_app
from api.auth import JwtSettings
from bootstrap.web import create_app
from infrastructure.metrics import JobMetrics, register_build_info
from infrastructure.persistence.migrate import migrate
from settings import Settings
from tests.unit.api.conftest import Backend, Client, dependencies


def promtool_problems(exposition: bytes | str) -> str:
    """What `promtool check metrics` finds wrong (lint included); skips visibly without promtool."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)")
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


async def test_in_progress_returns_to_zero_and_labels_stay_bounded(client: Client, backend: Backend) -> None:
    for n in range(5):
        await client.get(f"/api/v1/jobs/{n}/../{n}?token=x{n}")
    await client.get("/health/live")

    registry = backend.registry
    assert registry.get_sample_value("reportgen_http_requests_in_progress") == 0
    routes = {
        sample.labels["route"]
        for family in registry.collect()
        if family.name == "reportgen_http_requests"
        for sample in family.samples
    }
    assert routes <= {"unmatched", "/health/live", "/api/v1/jobs/{jobId}"}


async def test_api_exposition_passes_promtool(
    backend: Backend, jwt_settings: JwtSettings, alice: dict[str, str]
) -> None:
    register_build_info(backend.registry)
    JobMetrics(backend.registry)  # what the composition root adds to the API's registry
    report = backend.add_report()
    async with AsyncTestClient(app=build_app(dependencies(backend, jwt_settings))) as client:
        await client.post(f"/api/v1/reports/{report.id}/generate", json={"parameters": {"region": "EU"}}, headers=alice)
        await client.get("/no/such/route")
        exposition = (await client.get("/metrics")).content

    assert promtool_problems(exposition) == ""


async def test_embedded_app_serves_job_metrics_gauges_and_build_info_on_its_metrics(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, artifact_dir=tmp_path / "artifacts")
    await asyncio.to_thread(migrate, settings.effective_database_url)
    registry = CollectorRegistry()
    app = create_app(settings, configure_logs=False, registry=registry)

    async with AsyncTestClient(app=app) as client:  # the lifespan runs the in-process worker and the gauges
        for _ in range(100):  # the first sample is taken as the app starts, in a task of its own
            text = (await client.get("/metrics")).text
            if "reportgen_queue_depth{" in text:
                break
            await asyncio.sleep(0.05)

    assert 'reportgen_build_info{version="' in text
    assert "reportgen_jobs_started_total 0.0" in text
    assert 'reportgen_reconciler_jobs_total{action="enqueued"} 0.0' in text
    assert 'reportgen_jobs{status="Queued"} 0.0' in text
    assert 'reportgen_queue_depth{queue="in-process"} 0.0' in text
    assert promtool_problems(text) == ""


def test_a_worker_registry_with_every_job_metric_passes_promtool() -> None:
    registry = CollectorRegistry()
    register_build_info(registry)
    metrics = JobMetrics(registry)
    metrics.finished.labels("Failed", "REPORT_TIMEOUT").inc()
    metrics.retries.labels("WORKER_LOST").inc()
    metrics.runs.labels("succeeded").inc()
    metrics.duration.labels("succeeded").observe(0.2)
    metrics.queue_wait.observe(0.1)
    metrics.artifact_size.observe(2048)

    assert promtool_problems(generate_latest(registry)) == ""
