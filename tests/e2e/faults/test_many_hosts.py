"""Scenario 10: many hosts, no shared disk. Two API processes and two workers, each in a directory of its own with
no artifact directory in common, against one PostgreSQL, one Redis and one S3 server (moto on loopback): a job
accepted by replica A is run by either worker and downloaded from replica B (streamed by A, a 303 to the store by B);
a worker killed mid-upload leaves no visible object, and the job still succeeds on the other worker."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Process
from tests.e2e.faults.conftest import (
    CHECKABLE,
    FaultDeployment,
    Submitted,
    artifact_problem,
    generate_checkable,
    record,
    wait_all,
    wait_until,
)
from tests.loopback import free_port
from tests.s3_server import S3Server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

SCENARIO = "10 many hosts, no shared disk"
PREFIX = "artifacts"
WIDE_ROWS = 40_000
WIDE = {
    "name": "Wide and slow",
    "description": "About 2 KB a row and a pause every 2,000 rows: some 80 MB over several seconds",
    "query": (
        "SELECT n, repeat(md5(n::text), 64) AS pad, "
        "CASE WHEN n % 2000 = 0 THEN pg_sleep(0.3)::text ELSE '' END AS pause "
        "FROM generate_series(1, :rows) AS n"
    ),
    "parameters": [{"name": "rows", "type": "integer", "required": False, "default": WIDE_ROWS}],
    "formats": ["csv"],
    "deliveryTarget": "API_RESPONSE",
    "asyncEnabled": True,
}


class Host:
    """One machine of the deployment: a directory of its own for the process's working and var directories."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root / name
        (self.root / "var").mkdir(parents=True)
        self.env = {"REPORTGEN_VAR_DIR": str(self.root / "var"), "REPORTGEN_ARTIFACT_DIR": str(self.root / "artifacts")}

    def files(self) -> list[Path]:
        return [path for path in self.root.rglob("*") if path.is_file() and "artifacts" in path.parts]


def start_api(faults: FaultDeployment, host: Host, port: int, **env: str) -> Process:
    args = ("serve", "--port", str(port), "--workers", "1")
    return faults.spawn_in(host.root, f"api-{host.root.name}", *args, **host.env, **env)


def wait_ready(base_url: str, timeout: float = 30) -> None:
    def ready() -> bool:
        try:
            return httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    assert wait_until(ready, timeout), f"{base_url} did not become ready"


def worker_running(faults: FaultDeployment, job_id: str) -> Process:
    """The worker whose log says it started the job's current attempt."""
    for process in reversed(faults.workers):
        if any(e.get("event") == "job started" and e.get("job_id") == job_id for e in faults.events(process)):
            return process
    raise AssertionError(f"no worker started {job_id}")


def test_replicas_on_separate_hosts_share_only_the_object_store(faults: FaultDeployment, s3: S3Server) -> None:
    bucket = s3.bucket()
    # Every artifact in the bucket, none in the database (small ones would be, by default): the bucket's redirects,
    # uploads and hidden dead uploads are what this test checks.
    faults.env |= s3.env() | {
        "REPORTGEN_ARTIFACT_URL": f"s3://{bucket}/{PREFIX}",
        "REPORTGEN_INLINE_ARTIFACT_MAX_BYTES": "0",
    }
    hosts = {name: Host(faults.tmp / "hosts", name) for name in ("api-a", "api-b", "worker-1", "worker-2")}
    port_b = free_port()
    start_api(faults, hosts["api-a"], faults.port)
    start_api(faults, hosts["api-b"], port_b, REPORTGEN_RESULT_DELIVERY="redirect")
    for name in ("worker-1", "worker-2"):
        faults.spawn_in(hosts[name].root, name, "worker", **hosts[name].env)
    url_a, url_b = faults.base_url, f"http://127.0.0.1:{port_b}"
    wait_ready(url_a)
    wait_ready(url_b)
    checkable = faults.create_report(CHECKABLE)
    wide = faults.create_report(WIDE)
    headers = {"Authorization": f"Bearer {faults.token('alice')}"}

    with (
        httpx.Client(base_url=url_a, headers=headers, timeout=30) as a,
        httpx.Client(base_url=url_b, headers=headers, timeout=30) as b,
    ):
        # Accepted by A, run by either worker, downloaded from B (a 303 to the store) and from A (streamed).
        jobs = [generate_checkable(a, checkable, rows=500 + n, seed=n, fmt=("csv", "json")[n % 2]) for n in range(8)]
        seen = wait_all(b, [job.job_id for job in jobs], timeout=60)
        assert {s.status for s in seen.values()} == {"Succeeded"}, {j: s.status for j, s in seen.items()}
        for job in jobs:
            redirect = b.get(f"/api/v1/jobs/{job.job_id}/result")
            assert redirect.status_code == 303, redirect.text
            assert redirect.headers["location"].startswith(f"{s3.endpoint}/{bucket}/{PREFIX}/{job.job_id}/")
            from_store = httpx.get(redirect.headers["location"], timeout=30)
            assert artifact_problem(job.fmt, job.rows, job.seed, _with_etag(from_store, a, job)) is None
            assert artifact_problem(job.fmt, job.rows, job.seed, a.get(f"/api/v1/jobs/{job.job_id}/result")) is None
        ran = {
            process.name: sum(e.get("event") == "job succeeded" for e in faults.events(process))
            for process in faults.workers
        }
        record(SCENARIO, "small jobs run by each worker", str(ran), "")

        # A worker killed mid-upload: its multipart upload is never completed, the other worker runs the job again.
        job_id = a.post(f"/api/v1/reports/{wide}/generate").json()["jobId"]
        uploading = wait_until(lambda: any(job_id in key for key in s3.uploads(bucket)), 60, interval=0.05)
        assert uploading, f"no multipart upload of {job_id} began: {faults.log_lines(job_id)[-10:]}"
        victim = worker_running(faults, job_id)
        killed_at = faults.kill(victim)
        done = wait_all(b, [job_id], timeout=90)[job_id]
        assert done.status == "Succeeded", (done.body, faults.log_lines(job_id)[-15:])
        assert done.attempts == 2, done.body
        record(SCENARIO, "kill mid-upload -> Succeeded on the other worker", time.monotonic() - killed_at)
        visible = [key for key in s3.keys(bucket) if job_id in key]
        assert visible == [f"{PREFIX}/{job_id}/attempt-2.csv"], visible
        assert any("attempt-1" in key for key in s3.uploads(bucket) if job_id in key), "the dead upload stays hidden"
        download = b.get(f"/api/v1/jobs/{job_id}/result", follow_redirects=True)
        head = a.head(f"/api/v1/jobs/{job_id}/result")
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == head.headers["etag"].strip('"')
        assert download.content.count(b"\n") == WIDE_ROWS + 1
        ranged = a.get(f"/api/v1/jobs/{job_id}/result", headers={"Range": "bytes=-100"})
        assert (ranged.status_code, ranged.content) == (206, download.content[-100:])

    assert all(host.files() == [] for host in hosts.values()), {n: h.files() for n, h in hosts.items()}
    assert not faults.server_errors()


def _with_etag(from_store: httpx.Response, api: httpx.Client, job: Submitted) -> httpx.Response:
    """The store's answer with the API's ETag (the store's own is its MD5 or multipart tag), so that the checker
    compares the bytes with the SHA-256 the job recorded."""
    head = api.head(f"/api/v1/jobs/{job.job_id}/result")
    headers = dict(from_store.headers) | {"etag": head.headers["etag"]}
    return httpx.Response(from_store.status_code, headers=headers, content=from_store.content)
