"""Scenario 1: a worker dies (SIGKILL) in the middle of a slow report. The job's lease runs out, the reconciler
of another worker hands it back (attempts + 1) and it finishes; a job whose worker is killed in every one of its
attempts ends Failed WORKER_LOST. Neither stays Running."""

from __future__ import annotations

import pytest

from tests.e2e.faults.conftest import (
    SLOW,
    SLOW_ROWS,
    TERMINAL,
    FaultDeployment,
    Seen,
    backwards,
    mid_way,
    record,
    statuses,
    watch,
    watch_until_mid_way,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCENARIO = "1 worker killed mid-job"
MAX_ATTEMPTS = 2


def second_attempt_mid_way(seen: Seen) -> bool:
    return mid_way(seen) and seen.attempts == MAX_ATTEMPTS


def test_job_of_a_killed_worker_is_retried_and_fails_worker_lost_when_killed_in_every_attempt(
    faults: FaultDeployment,
) -> None:
    faults.env["REPORTGEN_MAX_ATTEMPTS"] = str(MAX_ATTEMPTS)
    faults.up(workers=1)
    report_id = faults.create_report(SLOW)
    with faults.client(faults.token("alice")) as alice:
        # Killed once: the second attempt, on a new worker, succeeds.
        retried = alice.post(f"/api/v1/reports/{report_id}/generate").json()["jobId"]
        before = watch_until_mid_way(alice, retried)
        killed_at = faults.kill(faults.workers[0])
        faults.start_worker()
        after = watch(alice, retried, TERMINAL, timeout=40)
        history = before + after
        final = history[-1]
        assert final.status == "Succeeded", (statuses(history), final.body, faults.log_lines(retried)[-15:])
        assert final.attempts == 2, final.body
        assert final.progress == 100
        assert not backwards(history, requeue_allowed=True), backwards(history, requeue_allowed=True)
        taken_over = next((s for s in after if s.attempts >= 2 or s.status == "Queued"), final)
        record(SCENARIO, "kill -> job handed back (lease expired)", taken_over.at - killed_at)
        record(SCENARIO, "kill -> Succeeded (new worker, second attempt)", final.at - killed_at)
        record(SCENARIO, "statuses seen", " -> ".join(statuses(history)), "")
        result = alice.get(f"/api/v1/jobs/{retried}/result")
        assert result.status_code == 200
        assert len(result.text.splitlines()) == SLOW_ROWS + 1, "the artifact is complete"

        # Killed in each of its MAX_ATTEMPTS attempts: Failed WORKER_LOST, no result.
        doomed = alice.post(f"/api/v1/reports/{report_id}/generate").json()["jobId"]
        history = watch_until_mid_way(alice, doomed)
        faults.kill(faults.workers[0])
        faults.start_worker()
        history += watch(alice, doomed, second_attempt_mid_way, timeout=30)
        assert second_attempt_mid_way(history[-1]), (statuses(history), history[-1].body)
        last_kill = faults.kill(faults.workers[0])
        faults.start_worker()
        history += watch(alice, doomed, TERMINAL, timeout=30)
        final = history[-1]
        assert final.status == "Failed", (statuses(history), final.body, faults.log_lines(doomed)[-15:])
        assert final.error_code == "WORKER_LOST", final.body
        assert final.attempts == MAX_ATTEMPTS, final.body
        assert not backwards(history, requeue_allowed=True), backwards(history, requeue_allowed=True)
        record(
            SCENARIO, f"last kill -> Failed WORKER_LOST ({MAX_ATTEMPTS} attempts, killed in each)", final.at - last_kill
        )
        result = alice.get(f"/api/v1/jobs/{doomed}/result")
        assert result.status_code == 409
        assert result.json()["jobStatus"] == "Failed"
    successes = faults.successes()
    assert (successes[retried], successes[doomed]) == (1, 0)
