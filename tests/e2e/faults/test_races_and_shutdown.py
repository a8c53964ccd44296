"""Scenarios 5 and 6: two workers racing for duplicated deliveries of the same jobs, and SIGTERM on the API (in-flight
requests complete) and on a worker (its running job finishes within the grace period or is handed back)."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.faults.conftest import (
    CHECKABLE,
    SLOW,
    SLOW_ROWS,
    TERMINAL,
    FaultDeployment,
    Seen,
    Submitted,
    artifact_problems,
    backwards,
    expected_csv,
    generate_checkable,
    poll_status,
    record,
    statuses,
    wait_all,
    wait_until,
    watch,
    watch_until_mid_way,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(100)]

RACING_JOBS = 40


def test_two_workers_racing_for_duplicated_deliveries_run_each_job_to_success_once(faults: FaultDeployment) -> None:
    scenario = "5 two workers, duplicate deliveries"
    faults.env["REPORTGEN_WORKER_CONCURRENCY"] = "8"
    faults.up(workers=0)
    report_id = faults.create_report(CHECKABLE)
    with faults.client(faults.token("alice")) as alice:
        jobs = [
            generate_checkable(alice, report_id, 1 + (i * 7) % 60, 1000 + i, ("csv", "json")[i % 2])
            for i in range(RACING_JOBS)
        ]
        # Every job delivered three times in all, under arq ids of their own, so arq cannot fold them together.
        faults.enqueue_duplicates([(job.job_id, f"{job.job_id}:dup-{copy}") for job in jobs for copy in "ab"])
        faults.hold_queue()  # both workers must be polling before any delivery is visible
        for worker in (faults.start_worker(), faults.start_worker()):
            faults.wait_started(worker)
        faults.release_queue()
        started_at = time.monotonic()

        histories: dict[str, list[Seen]] = {job.job_id: [] for job in jobs}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            for job in jobs:
                history = histories[job.job_id]
                if history and history[-1].status in TERMINAL:
                    continue
                if (seen := poll_status(alice, job.job_id)) is not None:
                    history.append(seen)
            if all(h and h[-1].status in TERMINAL for h in histories.values()):
                break
            time.sleep(0.05)
        finals = Counter(h[-1].status for h in histories.values() if h)
        assert finals == Counter({"Succeeded": RACING_JOBS}), finals
        record(
            scenario, f"{RACING_JOBS} jobs x 3 deliveries, 2 workers -> all Succeeded", time.monotonic() - started_at
        )
        going_back = {job_id: backwards(h, requeue_allowed=False) for job_id, h in histories.items()}
        assert not {job_id: p for job_id, p in going_back.items() if p}, "a status went backwards"
        assert all(h[-1].attempts == 1 for h in histories.values()), "a duplicate delivery is not a new attempt"
        assert not artifact_problems(alice, jobs)

    successes = faults.successes()
    runs = {job.job_id: successes[job.job_id] for job in jobs}
    assert runs == {job.job_id: 1 for job in jobs}, {k: v for k, v in runs.items() if v != 1}
    events = faults.worker_events()
    per_worker = Counter(e["_process"] for e in events if e.get("event") == "job succeeded")
    skipped = sum(1 for e in events if str(e.get("event", "")).startswith("job skipped"))
    # Each delivery a worker takes writes a line with the job's id: `job started` if it claimed the job, else
    # `job skipped: not claimable`.
    delivered_to = {job.job_id: {e["_process"] for e in events if e.get("job_id") == job.job_id} for job in jobs}
    both = sum(1 for workers in delivered_to.values() if len(workers) == 2)
    record(scenario, "jobs whose deliveries reached both workers", f"{both} of {len(jobs)}", "")
    record(scenario, "successes per worker", repr(dict(per_worker)), "")
    record(scenario, "duplicate deliveries skipped (logged)", skipped, "")
    assert len(per_worker) == 2, f"both workers took part: {per_worker}"
    assert both, "the duplicate deliveries of some job reached both workers (a real race)"


BIG_ROWS = 150_000
"""About 7 MB of CSV: more than the server's socket send buffer (at most 4 MB here) can take at once, so with a
small receive window on the client each download is still being written by the server when SIGTERM comes."""
DOWNLOADS = 6
RECEIVE_BUFFER = 16_384
SPRAYER_FIRST_SEED = 1_000
"""The sprayer's seeds start here, clear of the seeds of the jobs a test submits itself: the assertion that an
unanswered request left no job looks its seed up."""


class Sprayer:
    """Threads sending generate requests, each on a new connection, until the API stops taking connections."""

    def __init__(self, deployment: FaultDeployment, headers: httpx.Headers, report_id: str, threads: int = 3) -> None:
        self._deployment = deployment
        self._headers = headers
        self._report_id = report_id
        self._lock = threading.Lock()
        self._serial = iter(range(SPRAYER_FIRST_SEED, SPRAYER_FIRST_SEED + 10_000))
        self.accepted: list[Submitted] = []
        self.failures: list[str] = []
        self.refused = 0
        self.unanswered: list[int] = []
        """Seeds of requests that got no response at all: sent on a connection still in the closing listener's
        backlog (the kernel had completed it, the server never accepted it), or dropped in flight (a bug)."""
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        for _ in range(300):
            with self._lock:
                seed = next(self._serial)
            if not self._one(seed):
                return

    def _one(self, seed: int) -> bool:
        try:
            with httpx.Client(base_url=self._deployment.base_url, headers=self._headers, timeout=20) as client:
                response = client.post(
                    f"/api/v1/reports/{self._report_id}/generate", json={"parameters": {"rows": 3, "seed": seed}}
                )
        except httpx.ConnectError:
            with self._lock:
                self.refused += 1  # the listener is closed: this request was never accepted
            return False
        except httpx.RemoteProtocolError:
            with self._lock:
                self.unanswered.append(seed)
            return False
        except httpx.HTTPError as exc:
            with self._lock:
                self.failures.append(f"generate {seed}: {type(exc).__name__}: {exc}")
            return False
        with self._lock:
            if response.status_code == 202:
                self.accepted.append(Submitted(response.json()["jobId"], 3, seed, "csv"))
            elif response.status_code != 503:
                self.failures.append(f"generate {seed}: {response.status_code} {response.text[:200]}")
        return True


Download = tuple[httpx.Response, Iterator[bytes], bytearray]


def start_downloads(
    stack: contextlib.ExitStack, deployment: FaultDeployment, headers: httpx.Headers, url: str
) -> list[Download]:
    """Open DOWNLOADS streaming requests, each on its own connection, and read their first chunk."""
    downloads = []
    for _ in range(DOWNLOADS):
        transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)])
        client = stack.enter_context(
            httpx.Client(base_url=deployment.base_url, headers=headers, timeout=30, transport=transport)
        )
        response = stack.enter_context(client.stream("GET", url))
        assert response.status_code == 200
        chunks = response.iter_bytes(16_384)
        downloads.append((response, chunks, bytearray(next(chunks))))
    return downloads


def finish_downloads(downloads: list[Download], expected: bytes) -> list[str]:
    """Read every download to its end; what went wrong with each one that is not exactly `expected`."""
    problems = []
    for n, (response, chunks, body) in enumerate(downloads):
        try:
            for chunk in chunks:
                body += chunk
        except httpx.HTTPError as exc:
            problems.append(f"download {n}: {type(exc).__name__} after {len(body)} bytes")
            continue
        if bytes(body) != expected or response.headers["content-length"] != str(len(expected)):
            problems.append(f"download {n}: {len(body)} of {len(expected)} bytes, or different content")
    return problems


def test_sigterm_on_the_api_lets_in_flight_requests_complete(faults: FaultDeployment) -> None:
    scenario = "6a SIGTERM on the API"
    faults.up(workers=1)
    report_id = faults.create_report(CHECKABLE)
    with faults.client(faults.token("alice")) as alice:
        big = generate_checkable(alice, report_id, BIG_ROWS, 5, "csv")
        assert wait_all(alice, [big.job_id], timeout=60)[big.job_id].status == "Succeeded"
        sprayer = Sprayer(faults, alice.headers, report_id)
        expected = expected_csv(BIG_ROWS, 5)
        api = faults.api
        with contextlib.ExitStack() as stack:
            downloads = start_downloads(stack, faults, alice.headers, f"/api/v1/jobs/{big.job_id}/result")
            sprayer.start()
            wait_until(lambda: len(sprayer.accepted) >= 5, timeout=10, interval=0.05)  # generates in flight too
            api.popen.send_signal(signal.SIGTERM)
            term_at = time.monotonic()
            incomplete = finish_downloads(downloads, expected)
            record(scenario, "SIGTERM -> in-flight downloads completed", time.monotonic() - term_at)
            sprayer.join(30)
        exit_code = faults.wait_exit(api, timeout=30)
        record(scenario, f"SIGTERM -> API exited (code {exit_code})", time.monotonic() - term_at)
        record(scenario, "in-flight downloads of a 16 KB-window client", f"{DOWNLOADS} x {len(expected)} bytes", "")
        record(
            scenario,
            "generates accepted / refused connections / failures",
            f"{len(sprayer.accepted)} / {sprayer.refused} / {len(sprayer.failures)}",
            "",
        )
        record(
            scenario,
            "requests reset in the closing listener's backlog",
            f"{len(sprayer.unanswered)}",
            "",
        )
        assert not incomplete, incomplete
        assert not sprayer.failures, sprayer.failures[:10]
        assert exit_code == 0, f"exit code {exit_code}"
        # A request that got no response must not have been processed: it never reached the server.
        seeds = [str(seed) for seed in sprayer.unanswered]
        assert not faults.sql(
            "SELECT id FROM jobs WHERE parameters->>'seed' = ANY($1::text[]) AND id <> $2::uuid", seeds, big.job_id
        )

        faults.start_api()  # every job accepted before the shutdown is there and runs
        faults.wait_ready()
        last = wait_all(alice, [job.job_id for job in sprayer.accepted], timeout=40)
        assert len(last) == len(sprayer.accepted), "no accepted job is lost"
        assert Counter(s.status for s in last.values()) == Counter({"Succeeded": len(sprayer.accepted)})
        assert not artifact_problems(alice, sprayer.accepted[:20])


HANDED_BACK_ROWS = 2800
"""Some 6 s: seen mid-way after about 2 s, so still far from done when the 1 s grace runs out."""


def slow_job_running(client: httpx.Client, report_id: str, rows: int = SLOW_ROWS) -> str:
    body = {"parameters": {"rows": rows}}
    job_id: str = client.post(f"/api/v1/reports/{report_id}/generate", json=body).json()["jobId"]
    watch_until_mid_way(client, job_id)
    return job_id


def test_sigterm_on_a_worker_lets_its_job_finish_within_the_grace_or_hands_it_back(faults: FaultDeployment) -> None:
    faults.up(workers=0)
    slow = faults.create_report(SLOW)
    with faults.client(faults.token("alice")) as alice:
        # A grace long enough for the running job: it finishes, then the worker exits.
        scenario = "6c SIGTERM on a worker, grace 30 s"
        worker = faults.start_worker(REPORTGEN_SHUTDOWN_GRACE_SECONDS="30")
        finished = slow_job_running(alice, slow)
        term_at = time.monotonic()
        exit_code = faults.terminate(worker, timeout=40)
        record(scenario, f"SIGTERM -> worker exited after its job (code {exit_code})", time.monotonic() - term_at)
        final = poll_status(alice, finished)
        assert final is not None
        assert final.status == "Succeeded", (final.body, faults.log_lines(finished)[-10:])
        assert final.attempts == 1
        assert exit_code == 0

        # A grace of 1 s: the job is handed back (Queued, never Failed) and a new worker finishes it.
        scenario = "6b SIGTERM on a worker, grace 1 s"
        worker = faults.start_worker(REPORTGEN_SHUTDOWN_GRACE_SECONDS="1")
        handed = slow_job_running(alice, slow, rows=HANDED_BACK_ROWS)
        term_at = time.monotonic()
        exit_code = faults.terminate(worker, timeout=20)
        exited = time.monotonic() - term_at
        record(scenario, f"SIGTERM -> worker exited (code {exit_code})", exited)
        handed_back = poll_status(alice, handed)
        assert handed_back is not None
        assert handed_back.status == "Queued", (handed_back.body, faults.log_lines(handed)[-10:])
        assert exited < 15, "the worker stops after its grace period"

        faults.start_worker()
        after = watch(alice, handed, TERMINAL, timeout=40)
        history = [handed_back, *after]
        assert "Failed" not in statuses(history)
        final = history[-1]
        assert final.status == "Succeeded", (statuses(history), final.body)
        assert final.attempts == 2, final.body
        assert not backwards(history, requeue_allowed=True), backwards(history, requeue_allowed=True)
        record(scenario, "SIGTERM -> Succeeded on a new worker", final.at - term_at)
        assert len(alice.get(f"/api/v1/jobs/{handed}/result").text.splitlines()) == HANDED_BACK_ROWS + 1
    successes = faults.successes()
    assert (successes[finished], successes[handed]) == (1, 1)


WAITERS = 5


def test_clients_waiting_on_a_stopping_api_are_answered_at_once_and_can_wait_again(faults: FaultDeployment) -> None:
    """SIGTERM answers every `?wait=` request with the job's status then (no request holds the shutdown for its
    minute), and a restarted API answers the re-wait as soon as the worker finishes the job."""
    scenario = "6d SIGTERM on the API while clients wait"
    faults.up(workers=1)
    slow = faults.create_report(SLOW)
    with faults.client(faults.token("alice")) as alice:
        job_id = slow_job_running(alice, slow)
        answers: list[tuple[int, str, float]] = []

        def wait_for_job() -> None:
            with faults.client(faults.token("alice")) as client:
                response = client.get(f"/api/v1/jobs/{job_id}", params={"wait": "60"}, timeout=70)
                answers.append((response.status_code, response.json()["status"], time.monotonic()))

        waiters = [threading.Thread(target=wait_for_job) for _ in range(WAITERS)]
        for waiter in waiters:
            waiter.start()
        time.sleep(0.5)  # all of them are waiting by now
        api = faults.api
        api.popen.send_signal(signal.SIGTERM)
        term_at = time.monotonic()
        for waiter in waiters:
            waiter.join(timeout=20)
        answered = max((at for _, _, at in answers), default=term_at) - term_at
        record(scenario, f"SIGTERM -> {len(answers)} waiting clients answered", answered)
        assert len(answers) == WAITERS, "every waiting client got an answer"
        assert {(code, status) for code, status, _ in answers} == {(200, "Running")}
        assert answered < 3, "waiters are answered at the signal, not when their wait runs out"
        assert faults.wait_exit(api, timeout=30) == 0

        faults.start_api()
        faults.wait_ready()
        rewait = alice.get(f"/api/v1/jobs/{job_id}", params={"wait": "60"}, timeout=70)
        record(scenario, "API restarted -> re-wait answered with the finished job", time.monotonic() - term_at)
        assert rewait.json()["status"] == "Succeeded"
