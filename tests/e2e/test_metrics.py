"""Prometheus metrics from real processes: `reportgen serve --workers 2` (multiprocess mode), the arq worker's own
endpoint, and the embedded mode's single endpoint; `promtool check metrics` on each when promtool is installed."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from infrastructure.demo import SALES_SUMMARY_ID
from tests.e2e.conftest import E2E_REDIS_DB, Deployment, Process, _base_env, deployed, wait_for_status
from tests.e2e.test_production_mode import SERIES, create_report, generate
from tests.loopback import free_port
from tests.services import REDIS_URL, require

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

API_PROCESSES = 2


@dataclass
class Stack:
    deployment: Deployment
    worker_metrics_url: str
    multiprocess_dir: Path


def samples(text: str, name: str, **labels: str) -> list[float]:
    """The values of every sample called `name` whose labels include `labels`."""
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=5)  # a new connection each time: any API process may answer
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def wait_until(condition: str, check: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {condition}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, e2e_database_url: str, e2e_reporting_url: str) -> Iterator[Stack]:
    """PostgreSQL + Redis, `reportgen serve --workers 2` and one `reportgen worker` with its metrics port."""
    require("Redis", REDIS_URL)
    redis_url = f"{REDIS_URL.rstrip('/')}/{E2E_REDIS_DB}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    tmp = tmp_path_factory.mktemp("metrics")
    worker_port = free_port()
    env = _base_env(tmp) | {
        "REPORTGEN_DATABASE_URL": e2e_database_url,
        "REPORTGEN_REPORTING_DATABASE_URL": e2e_reporting_url,
        "REPORTGEN_REDIS_URL": redis_url,
        "REPORTGEN_JWT_SECRET": "metrics-e2e-secret-" + "x" * 32,
        "REPORTGEN_RECONCILE_INTERVAL_SECONDS": "1",
        "REPORTGEN_WORKER_METRICS_PORT": str(worker_port),
        # Set here only to look inside; `reportgen serve --workers N` makes a temporary one otherwise.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
    }
    try:
        with deployed(tmp, env, "--workers", str(API_PROCESSES)) as deployment:
            worker_url = f"http://127.0.0.1:{worker_port}/metrics"
            wait_until("the worker serves /metrics", lambda: _answers(worker_url))
            yield Stack(deployment, worker_url, tmp / "prometheus")
    finally:
        client.flushdb()
        client.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_request_counts_are_whole_whichever_api_process_answers_the_scrape(stack: Stack) -> None:
    requests = 60
    for _ in range(requests):
        assert httpx.get(f"{stack.deployment.base_url}/health/live", timeout=5).status_code == 200

    for _ in range(8):
        text = scrape(f"{stack.deployment.base_url}/metrics")
        counted = samples(text, "reportgen_http_requests_total", route="/health/live", status="200")
        assert sum(counted) == requests
        assert samples(text, "reportgen_http_requests_in_progress") == [1.0]  # this scrape, summed over processes
        assert samples(text, "reportgen_http_request_duration_seconds_count", route="/health/live") == [requests]
    # Both API processes write into the one directory that any of them reads.
    writers = {path.stem.rsplit("_", 1)[1] for path in stack.multiprocess_dir.glob("gauge_livesum_*.db")}
    assert len(writers) == API_PROCESSES


def test_a_job_shows_on_the_api_and_the_worker_endpoints(stack: Stack) -> None:
    deployment = stack.deployment
    report_id = create_report(deployment, SERIES)
    with deployment.client(deployment.token("alice")) as alice:
        job = generate(alice, report_id, {"parameters": {"upto": 50}}).json()
        assert wait_for_status(alice, job["jobId"], {"Succeeded", "Failed"})["status"] == "Succeeded"

    api = scrape(f"{deployment.base_url}/metrics")
    assert samples(api, "reportgen_jobs_submitted_total") == [1.0]
    assert samples(api, "reportgen_build_info") == [1.0]
    worker = scrape(stack.worker_metrics_url)
    assert samples(worker, "reportgen_jobs_started_total") == [1.0]
    assert samples(worker, "reportgen_jobs_finished_total", status="Succeeded", error_code="none") == [1.0]
    assert samples(worker, "reportgen_job_runs_total", outcome="succeeded") == [1.0]
    assert samples(worker, "reportgen_job_queue_wait_seconds_count") == [1.0]
    assert samples(worker, "reportgen_job_run_duration_seconds_count", outcome="succeeded") == [1.0]
    (size,) = samples(worker, "reportgen_job_artifact_size_bytes_sum")
    assert size > 50 * len("1,1,row 1\r\n")
    assert samples(worker, "reportgen_build_info") == [1.0]
    wait_until(
        "the sampled gauges show no unfinished job",
        lambda: samples(scrape(stack.worker_metrics_url), "reportgen_jobs", status="Running") == [0.0],
    )
    assert samples(scrape(stack.worker_metrics_url), "reportgen_queue_depth") != []


def promtool_problems(text: str) -> str:
    """What `promtool check metrics` says about `text`; skips (visibly) when promtool is not installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


@pytest.mark.parametrize("endpoint", ["api", "worker"])
def test_both_endpoints_pass_promtool(stack: Stack, endpoint: str) -> None:
    url = f"{stack.deployment.base_url}/metrics" if endpoint == "api" else stack.worker_metrics_url

    assert promtool_problems(scrape(url)) == ""


def test_embedded_mode_serves_http_and_job_metrics_on_one_endpoint(embedded: tuple[Deployment, Process]) -> None:
    deployment, _ = embedded
    metrics_url = f"{deployment.base_url}/metrics"
    with deployment.client(deployment.token("dev", "admin")) as dev:
        job = generate(dev, str(SALES_SUMMARY_ID), {"parameters": {"region": "EU"}, "format": "csv"}).json()
        assert wait_for_status(dev, job["jobId"], {"Succeeded", "Failed"})["status"] == "Succeeded"

    text = scrape(metrics_url)
    assert samples(text, "reportgen_jobs_submitted_total") == [1.0]
    assert samples(text, "reportgen_jobs_finished_total", status="Succeeded") == [1.0]
    assert samples(text, "reportgen_job_artifact_size_bytes_count") == [1.0]
    assert samples(text, "reportgen_http_requests_total", route="/api/v1/reports/{reportId}/generate") == [1.0]
    assert samples(text, "reportgen_build_info") == [1.0]
    wait_until(
        "the gauges are sampled", lambda: samples(scrape(metrics_url), "reportgen_queue_depth", queue="in-process")
    )
    assert samples(scrape(metrics_url), "reportgen_jobs", status="Running") == [0.0]


def test_embedded_endpoint_passes_promtool(embedded: tuple[Deployment, Process]) -> None:
    deployment, _ = embedded
    with deployment.client(deployment.token("dev", "admin")) as dev:
        generate(dev, str(SALES_SUMMARY_ID), {"parameters": {"region": "EU"}})
    metrics_url = f"{deployment.base_url}/metrics"
    wait_until("the gauges are sampled", lambda: samples(scrape(metrics_url), "reportgen_queue_depth"))

    assert promtool_problems(scrape(metrics_url)) == ""
