"""Scenarios 2 and 3: Redis loses the queue (FLUSHDB, or a restart of a Redis that keeps nothing on disk) while
jobs are Queued, and Redis is unreachable while clients call generate."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from tests.e2e.faults.conftest import (
    CHECKABLE,
    FaultDeployment,
    Submitted,
    artifact_problem,
    artifact_problems,
    generate_checkable,
    is_problem,
    poll_status,
    record,
    wait_all,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

QUEUED_JOBS = 12
OUTAGE_SECONDS = 2.0


def queue_then_lose(faults: FaultDeployment, alice: httpx.Client, report_id: str, loss: str, first: int) -> None:
    """Generate QUEUED_JOBS with no worker running, make Redis lose them, start a worker: all must finish."""
    scenario = f"2 Redis data lost ({loss})"
    jobs = [generate_checkable(alice, report_id, 5 + i, first + i, ("csv", "json")[i % 2]) for i in range(QUEUED_JOBS)]
    assert faults.redis.dbsize() > 0, "the jobs were handed to the queue"
    lost_at = time.monotonic()
    if loss == "flushdb":
        faults.redis.flushdb()
    else:
        faults.redis.restart()
    assert faults.redis.dbsize() == 0, "the queue is empty: only the database knows about the jobs"
    seen = [poll_status(alice, job.job_id) for job in jobs]
    assert all(s is not None and s.status == "Queued" for s in seen), seen

    worker = faults.start_worker()
    last = wait_all(alice, [job.job_id for job in jobs], timeout=40)
    outcomes = Counter(seen.status for seen in last.values())
    assert outcomes == Counter({"Succeeded": QUEUED_JOBS}), (outcomes, [s.body for s in last.values()][:3])
    finished = max(seen.at for seen in last.values())
    record(scenario, f"data lost -> all {QUEUED_JOBS} Queued jobs Succeeded (worker started then)", finished - lost_at)
    assert not artifact_problems(alice, jobs)
    assert all(seen.attempts == 1 for seen in last.values()), "a re-enqueued job is not a new attempt"
    successes = faults.successes()
    assert {job.job_id: successes[job.job_id] for job in jobs} == {job.job_id: 1 for job in jobs}
    faults.terminate(worker)


def test_jobs_queued_when_redis_loses_its_data_all_finish(faults: FaultDeployment) -> None:
    faults.up(workers=0)  # nobody takes the jobs: they stay Queued, in the database and in Redis
    report_id = faults.create_report(CHECKABLE)
    with faults.client(faults.token("alice")) as alice:
        queue_then_lose(faults, alice, report_id, "flushdb", first=0)
        queue_then_lose(faults, alice, report_id, "restart", first=100)


def test_generate_with_redis_down_is_503_reads_keep_working_and_the_same_worker_resumes(
    faults: FaultDeployment,
) -> None:
    scenario = "3 Redis unreachable"
    faults.up(workers=1)
    worker = faults.workers[0]
    report_id = faults.create_report(CHECKABLE)
    with faults.client(faults.token("alice")) as alice:
        done = generate_checkable(alice, report_id, 4, 7, "csv")
        assert wait_all(alice, [done.job_id], timeout=20)[done.job_id].status == "Succeeded"

        faults.redis.stop()
        stopped_at = time.monotonic()
        refused = []
        for _ in range(3):
            started = time.monotonic()
            response = alice.post(f"/api/v1/reports/{report_id}/generate", json={"parameters": {"rows": 2}})
            refused.append((response, time.monotonic() - started))
        for response, _ in refused:
            assert is_problem(response, 503), (response.status_code, response.text)
            assert int(response.headers["Retry-After"]) >= 1
            body = response.json()
            assert {"type", "title", "status", "detail", "instance", "requestId"} <= body.keys(), body
        record(scenario, "generate answered 503 within (slowest of 3)", max(elapsed for _, elapsed in refused))

        reads = 0
        while time.monotonic() - stopped_at < OUTAGE_SECONDS:  # reads keep working for the whole outage
            status = alice.get(f"/api/v1/jobs/{done.job_id}")
            assert status.status_code == 200, status.text
            assert status.json()["status"] == "Succeeded"
            assert artifact_problem("csv", 4, 7, alice.get(f"/api/v1/jobs/{done.job_id}/result")) is None
            reads += 1
        record(scenario, f"status + result reads answered 200 while Redis was down ({OUTAGE_SECONDS} s)", reads, "")
        ready = httpx.get(f"{faults.base_url}/health/ready", timeout=10)
        assert ready.status_code == 503, ready.text

        left = faults.sql("SELECT id::text, status, error_code FROM jobs WHERE id <> $1::uuid", done.job_id)
        assert all(row["status"] == "Failed" and row["error_code"] == "QUEUE_UNAVAILABLE" for row in left), left
        for row in left:  # the client sees the same thing
            assert alice.get(f"/api/v1/jobs/{row['id']}").json()["error"]["code"] == "QUEUE_UNAVAILABLE"

        faults.redis.start()  # empty: a restart of a Redis that keeps nothing
        restarted_at = time.monotonic()
        outage = restarted_at - stopped_at
        accepted: list[Submitted] = []

        def generate_accepted() -> bool:
            response = alice.post(f"/api/v1/reports/{report_id}/generate", json={"parameters": {"rows": 3, "seed": 9}})
            if response.status_code == 202:
                accepted.append(Submitted(response.json()["jobId"], 3, 9, "csv"))
                return True
            assert response.status_code == 503, response.text
            return False

        assert wait_until(generate_accepted, timeout=15, interval=0.2), "generate never recovered"
        lines = worker.output().strip().splitlines()
        assert worker.popen.poll() is None, (
            f"the worker exited (code {worker.popen.returncode}) while Redis was down, instead of reconnecting: "
            f"{lines[-1] if lines else ''}"
        )
        record(scenario, f"Redis back -> generate 202 (outage {outage:.1f} s)", time.monotonic() - restarted_at)
        last = wait_all(alice, [accepted[0].job_id], timeout=45)[accepted[0].job_id]
        assert last.status == "Succeeded", (last.body, worker.output()[-3000:])
        record(scenario, "Redis back -> new job Succeeded on the same worker", last.at - restarted_at)
        assert worker.popen.poll() is None, "the worker is still the same process"
        assert not artifact_problems(alice, accepted)
    assert faults.successes()[accepted[0].job_id] == 1
    assert not faults.server_errors(), faults.server_errors()[:5]
