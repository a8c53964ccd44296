"""Scenario 7: the controls clients expect, end to end: Idempotency-Key (including concurrent duplicates), cancel of
a Queued and of a Running job, retention (expiresAt, then 410), and the per-user limit on active jobs (429)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import datetime

import httpx
import pytest

from tests.e2e.faults.conftest import (
    CHECKABLE,
    SLOW,
    TERMINAL,
    FaultDeployment,
    artifact_problem,
    artifact_problems,
    artifacts_of,
    current_status,
    generate_checkable,
    is_problem,
    record,
    wait_all,
    wait_until,
    watch,
    watch_until_mid_way,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SCENARIO = "7 controls"
CONCURRENT_DUPLICATES = 16
LIMIT = 3
TTL = 4


def generate(client: httpx.Client, report_id: str, body: dict[str, object], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(f"/api/v1/reports/{report_id}/generate", json=body, headers=headers)


def concurrent_generates(
    deployment: FaultDeployment, token: str, report_id: str, body: dict[str, object], key: str, count: int
) -> list[httpx.Response | Exception]:
    """`count` requests with one Idempotency-Key, released together, each on a connection of its own."""
    barrier = threading.Barrier(count)
    answers: list[httpx.Response | Exception] = []
    lock = threading.Lock()

    def one() -> None:
        with deployment.client(token) as client:
            barrier.wait(10)
            try:
                answer: httpx.Response | Exception = generate(client, report_id, body, key)
            except httpx.HTTPError as exc:
                answer = exc
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_controls_end_to_end(faults: FaultDeployment) -> None:
    """One deployment (per-user limit 3, result TTL 4 s), the controls one after the other."""
    faults.env["REPORTGEN_MAX_ACTIVE_JOBS_PER_USER"] = str(LIMIT)
    faults.env["REPORTGEN_RESULT_TTL_SECONDS"] = str(TTL)
    faults.up(workers=0)
    checkable = faults.create_report(CHECKABLE)
    slow = faults.create_report(SLOW)
    cancelled = limit_and_cancel_while_queued(faults, checkable)
    idempotency(faults, checkable)
    cancel_while_running(faults, slow)
    retention(faults, checkable)
    started = {e.get("job_id") for e in faults.worker_events() if e.get("event") == "job started"}
    assert cancelled not in started, "a job cancelled while Queued never runs"


def limit_and_cancel_while_queued(faults: FaultDeployment, report_id: str) -> str:
    """With no worker running: 429 over the per-user limit; cancel of a Queued job (at once), which frees a
    slot; 404 for others' and unknown jobs, 409 for a finished one. Then a worker runs the rest."""
    with faults.client(faults.token("alice")) as alice, faults.client(faults.token("mallory")) as mallory:
        queued = [generate_checkable(alice, report_id, 3, seed, "csv") for seed in range(LIMIT)]
        over = generate(alice, report_id, {"parameters": {"rows": 3}})
        assert is_problem(over, 429), (over.status_code, over.text)
        assert int(over.headers["Retry-After"]) >= 1
        assert generate(mallory, report_id, {}).status_code == 202, "the limit is per user"

        cancelled = alice.post(f"/api/v1/jobs/{queued[0].job_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["status"] == "Cancelled", "a Queued job is cancelled at once"
        assert current_status(alice, queued[0].job_id) == "Cancelled"
        result = alice.get(f"/api/v1/jobs/{queued[0].job_id}/result")
        assert is_problem(result, 409)
        assert result.json()["jobStatus"] == "Cancelled"
        assert is_problem(alice.post(f"/api/v1/jobs/{queued[0].job_id}/cancel"), 409), "already terminal"
        assert mallory.post(f"/api/v1/jobs/{queued[1].job_id}/cancel").status_code == 404, "not visible to others"
        assert alice.post(f"/api/v1/jobs/{uuid.uuid4()}/cancel").status_code == 404
        assert generate(alice, report_id, {"parameters": {"rows": 3}}).status_code == 202, "a cancel frees a slot"

        faults.start_worker()
        rest = [job.job_id for job in queued[1:]]
        assert {s.status for s in wait_all(alice, rest, timeout=30, interval=0.05).values()} == {"Succeeded"}
        assert not artifact_problems(alice, queued[1:])
        assert current_status(alice, queued[0].job_id) == "Cancelled"
    return queued[0].job_id


def idempotency(faults: FaultDeployment, report_id: str) -> None:
    """A replay answers the first job (202, Idempotent-Replayed: true); another body with the key is 422; keys
    are per user; concurrent duplicates with one key make exactly one job."""
    body: dict[str, object] = {"parameters": {"rows": 4, "seed": 2}, "format": "csv"}
    with faults.client(faults.token("ida")) as ida, faults.client(faults.token("bob")) as bob:
        first = generate(ida, report_id, body, "order-42")
        assert first.status_code == 202, first.text
        assert first.headers.get("Idempotent-Replayed", "false").lower() != "true"
        job_id = first.json()["jobId"]
        replay = generate(ida, report_id, body, "order-42")
        assert replay.status_code == 202, replay.text
        assert replay.json()["jobId"] == job_id
        assert replay.headers.get("Idempotent-Replayed", "").lower() == "true", dict(replay.headers)
        assert replay.headers["Location"] == first.headers["Location"]

        different = generate(ida, report_id, {**body, "format": "json"}, "order-42")
        assert is_problem(different, 422), (different.status_code, different.text)
        other_user = generate(bob, report_id, body, "order-42")
        assert other_user.status_code == 202
        assert other_user.json()["jobId"] != job_id, "keys belong to one user"

        assert wait_all(ida, [job_id], timeout=20)[job_id].status == "Succeeded"
        after_success = generate(ida, report_id, body, "order-42")
        assert after_success.json()["jobId"] == job_id, "the key still names the first job once it has finished"

    answers = concurrent_generates(faults, faults.token("carol"), report_id, body, "carol-once", CONCURRENT_DUPLICATES)
    errors = [a for a in answers if isinstance(a, Exception)]
    responses = [a for a in answers if isinstance(a, httpx.Response)]
    assert not errors, errors
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {202, 409}, [r.text for r in responses if r.status_code not in (202, 409)]
    job_ids = {r.json()["jobId"] for r in responses if r.status_code == 202}
    assert len(job_ids) == 1, f"concurrent duplicates made {len(job_ids)} jobs: {codes}"
    rows = faults.sql("SELECT id::text FROM jobs WHERE owner_id = 'carol'")
    assert [row["id"] for row in rows] == list(job_ids), rows
    record(SCENARIO, f"{CONCURRENT_DUPLICATES} concurrent generates with one key: answers", repr(Counter(codes)), "")
    assert faults.successes()[job_id] == 1


def cancel_while_running(faults: FaultDeployment, report_id: str) -> None:
    """A Running job is Cancelled within seconds, stays so, and leaves no result."""
    with faults.client(faults.token("alice")) as alice:
        slow_id = alice.post(f"/api/v1/reports/{report_id}/generate").json()["jobId"]
        watch_until_mid_way(alice, slow_id)
        cancel_at = time.monotonic()
        response = alice.post(f"/api/v1/jobs/{slow_id}/cancel")
        assert response.status_code == 202, response.text
        history = watch(alice, slow_id, TERMINAL, timeout=15)
        assert history[-1].status == "Cancelled", (history[-1].body, faults.log_lines(slow_id)[-10:])
        record(SCENARIO, "cancel of a Running job -> Cancelled", history[-1].at - cancel_at)
        assert history[-1].at - cancel_at < 10, "a Running job is Cancelled within seconds"
        assert alice.get(f"/api/v1/jobs/{slow_id}/result").json()["jobStatus"] == "Cancelled"
        # It stays Cancelled past the time the report needed (about 3 s more): the aborted attempt records nothing.
        assert not wait_until(lambda: current_status(alice, slow_id) not in ("Cancelled", ""), timeout=4)
        assert not artifacts_of(faults, slow_id), "a cancelled job leaves no artifact"
    assert faults.successes()[slow_id] == 0


def retention(faults: FaultDeployment, report_id: str) -> None:
    """expiresAt = finishedAt + TTL; after it the result is 410 and the sweep deletes the file, not a live one."""
    with faults.client(faults.token("alice")) as alice:
        job = generate_checkable(alice, report_id, 5, 3, "json")
        last = wait_all(alice, [job.job_id], timeout=20, interval=0.05)[job.job_id]
        assert last.status == "Succeeded"
        assert last.body.get("expiresAt"), f"a Succeeded job shows expiresAt: {last.body}"
        expires_at = datetime.fromisoformat(last.body["expiresAt"].replace("Z", "+00:00"))
        finished_at = datetime.fromisoformat(last.body["finishedAt"].replace("Z", "+00:00"))
        assert abs((expires_at - finished_at).total_seconds() - TTL) < 1.5, (finished_at, expires_at)
        assert artifact_problem("json", 5, 3, alice.get(f"/api/v1/jobs/{job.job_id}/result")) is None
        assert artifacts_of(faults, job.job_id), "the artifact is stored (its key names the job)"

        gone_at: list[float] = []

        def gone() -> bool:
            response = alice.get(f"/api/v1/jobs/{job.job_id}/result")
            if response.status_code == 410:
                gone_at.append(time.time())
                return True
            assert response.status_code == 200, response.text
            return False

        assert wait_until(gone, timeout=TTL + 15, interval=0.2), "the result never became 410"
        late = gone_at[0] - expires_at.timestamp()
        record(SCENARIO, f"retention TTL {TTL} s: 410 observed after expiresAt", late)
        assert late > -1, "the result is not gone before expiresAt"
        assert is_problem(alice.get(f"/api/v1/jobs/{job.job_id}/result"), 410)
        assert current_status(alice, job.job_id) == "Succeeded", "the job itself stays"

        fresh = generate_checkable(alice, report_id, 6, 4, "csv")
        swept = wait_until(lambda: not artifacts_of(faults, job.job_id), timeout=10)
        record(SCENARIO, "retention: expired artifact deleted by the sweep", "yes" if swept else "no", "")
        assert swept, f"the sweep left {artifacts_of(faults, job.job_id)}"
        assert wait_all(alice, [fresh.job_id], timeout=20, interval=0.05)[fresh.job_id].status == "Succeeded"
        assert not artifact_problems(alice, [fresh]), "a live job's artifact is not swept"
        assert artifacts_of(faults, fresh.job_id)
