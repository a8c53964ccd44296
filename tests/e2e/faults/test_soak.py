"""Soak: 2,000 generate requests at concurrency 32 from 8 users while a worker is SIGKILLed every few seconds (and
replaced), and the private Redis is flushed once. At the end every accepted job is terminal, none is lost, every
Succeeded job's artifact is exactly what its parameters produce, and no job ran to success twice."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.faults.conftest import (
    CHECKABLE,
    TERMINAL,
    FaultDeployment,
    Submitted,
    artifact_problem,
    record,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.direct_database]

TOTAL = 2000
CONCURRENCY = 32
USERS = 8
WORKERS = 2
KILL_EVERY_SECONDS = 5.0
MIN_KILLS = 5
CHAOS_LIMIT_SECONDS = 150.0
API_WORKERS = 2
DRAIN_LIMIT_SECONDS = 120.0
"""How long the test waits for the backlog at most: more than arq's in-progress lock of a delivery (job timeout
+ 10 s = report timeout 30 + 60 + 10 s), so that a job held by that lock is seen finishing, late."""
DRAIN_BUDGET_SECONDS = 30.0
"""How long the backlog may take once the chaos is over: the workers' own pace plus lease 3 s + reconcile 1 s."""
STUCK_AFTER_SECONDS = 10.0
"""No job finished for this long: take a snapshot of what the unfinished ones look like, for the report."""
SCENARIO = "soak"


@dataclass
class Ledger:
    """What the clients saw."""

    accepted: dict[str, Submitted] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)
    codes: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    unavailable_without_retry_after: int = 0
    sent: int = 0


class Chaos(threading.Thread):
    """Every KILL_EVERY_SECONDS: SIGKILL the oldest worker and start a new one; once `flush_when()` holds: FLUSHDB."""

    def __init__(self, deployment: FaultDeployment, flush_when: threading.Event) -> None:
        super().__init__(name="chaos", daemon=True)
        self.deployment = deployment
        self.flush_when = flush_when
        self.stop = threading.Event()
        self.kills: list[float] = []
        self.flushed_at: float | None = None
        self.flushed_wall: datetime | None = None
        self.flushed_keys = 0
        self.failure: BaseException | None = None
        self.died: list[str] = []
        """Workers that exited without being killed (a finding: they should survive a flush)."""

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test
            self.failure = exc

    def _run(self) -> None:
        deadline = time.monotonic() + CHAOS_LIMIT_SECONDS
        next_kill = time.monotonic() + KILL_EVERY_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.stop.wait(0.05)
            if self.flushed_at is None and self.flush_when.is_set():
                self.flushed_keys = self.deployment.redis.dbsize()
                self.deployment.redis.flushdb()
                self.flushed_at, self.flushed_wall = time.monotonic(), datetime.now(UTC)
            for worker in self.deployment.workers:
                if worker.popen.poll() is not None:
                    self.died.append(f"{worker.name} exited with {worker.popen.returncode}")
                    self.deployment.kill(worker)  # retire it
                    self.deployment.start_worker()
            if time.monotonic() >= next_kill:
                victim = self.deployment.workers[0]
                self.kills.append(self.deployment.kill(victim))
                self.deployment.start_worker()
                next_kill += KILL_EVERY_SECONDS

    @property
    def done(self) -> bool:
        return len(self.kills) >= MIN_KILLS and self.flushed_at is not None


async def submit(deployment: FaultDeployment, report_id: str, ledger: Ledger, halfway: threading.Event) -> None:
    tokens = [deployment.token(f"soak-user-{n}") for n in range(USERS)]
    serial = itertools.count()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=deployment.base_url, timeout=30, limits=limits) as client:

        async def one_client() -> None:
            while (i := next(serial)) < TOTAL:
                job = Submitted("", 1 + i % 37, i, ("csv", "json")[i % 2])
                user = i % USERS
                try:
                    response = await client.post(
                        f"/api/v1/reports/{report_id}/generate",
                        json={"parameters": {"rows": job.rows, "seed": job.seed}, "format": job.fmt},
                        headers={"Authorization": f"Bearer {tokens[user]}"},
                    )
                except httpx.HTTPError as exc:
                    ledger.errors.append(f"request {i}: {type(exc).__name__}: {exc}")
                    continue
                finally:
                    ledger.sent += 1
                    if ledger.sent >= TOTAL // 2:
                        halfway.set()
                ledger.codes[response.status_code] += 1
                if response.status_code == 202:
                    job_id = response.json()["jobId"]
                    ledger.accepted[job_id] = Submitted(job_id, job.rows, job.seed, job.fmt)
                    ledger.owner[job_id] = tokens[user]
                elif response.status_code == 503:
                    ledger.unavailable_without_retry_after += "Retry-After" not in response.headers
                else:
                    ledger.errors.append(f"request {i}: {response.status_code} {response.text[:200]}")

        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))


async def fetch_results(
    deployment: FaultDeployment, ledger: Ledger, statuses: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """Every accepted job's result through the API: the exact artifact for a Succeeded job, 409 otherwise."""
    problems: dict[str, str] = {}
    pending = iter(list(ledger.accepted.values()))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=deployment.base_url, timeout=30, limits=limits) as client:

        async def one_client() -> None:
            for job in pending:
                headers = {"Authorization": f"Bearer {ledger.owner[job.job_id]}"}
                result = await client.get(f"/api/v1/jobs/{job.job_id}/result", headers=headers)
                status = statuses.get(job.job_id, {}).get("status")
                if status == "Succeeded":
                    problem = artifact_problem(job.fmt, job.rows, job.seed, result)
                elif result.status_code != 409 or result.json().get("jobStatus") != status:
                    problem = f"{status} job's result answered {result.status_code}: {result.text[:200]}"
                else:
                    problem = None
                if problem is not None:
                    problems[job.job_id] = problem

        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
    return problems


def unfinished(deployment: FaultDeployment, created_before: datetime | None = None) -> int:
    rows = deployment.sql(
        "SELECT count(*) AS n FROM jobs WHERE status IN ('Queued', 'Running') AND created_at <= $1",
        created_before or datetime.now(UTC),
    )
    return int(rows[0]["n"])


@dataclass
class Drain:
    """How the backlog drained once the chaos was over (time.monotonic values)."""

    started: float
    finished: float | None = None
    flushed_jobs_finished: float | None = None
    stuck: str = ""
    """What a few unfinished jobs looked like when nothing had finished for STUCK_AFTER_SECONDS."""


def drain(deployment: FaultDeployment, chaos: Chaos) -> Drain:
    """Wait (bounded by DRAIN_LIMIT_SECONDS) until no job is Queued or Running."""
    result = Drain(time.monotonic())
    deadline = result.started + DRAIN_LIMIT_SECONDS
    last_change, last_count = time.monotonic(), -1
    while time.monotonic() < deadline:
        if (
            result.flushed_jobs_finished is None
            and chaos.flushed_wall is not None
            and not unfinished(deployment, chaos.flushed_wall)
        ):
            result.flushed_jobs_finished = time.monotonic()
        if not (count := unfinished(deployment)):
            result.finished = time.monotonic()
            break
        if count != last_count:
            last_change, last_count = time.monotonic(), count
        elif not result.stuck and time.monotonic() - last_change > STUCK_AFTER_SECONDS:
            result.stuck = f"{count} jobs unfinished, none finished for {STUCK_AFTER_SECONDS:g} s:\n"
            result.stuck += stuck_report(deployment)
            print(f"[soak] {result.stuck}")  # noqa: T201
        time.sleep(0.5)
    return result


def stuck_report(deployment: FaultDeployment, limit: int = 5) -> str:
    """What the database, Redis and the workers' logs say about a few jobs that are still Queued or Running."""
    rows = deployment.sql(
        "SELECT id::text, status, attempts, created_at, started_at, error_code FROM jobs "
        "WHERE status IN ('Queued', 'Running') ORDER BY created_at LIMIT $1",
        limit,
    )
    lines = []
    with deployment.redis.client() as client:
        for row in rows:
            keys = sorted(k.decode() for k in client.scan_iter(match=f"*{row['id']}*", count=1000))
            ttls = {key: client.pttl(key) for key in keys}
            lines.append(f"{row} redis keys (pttl ms): {ttls}")
            lines += [f"    {line[:300]}" for line in deployment.log_lines(row["id"])[-6:]]
    return "\n".join(lines)


@dataclass
class Verdict:
    """What the API, the database and the workers' logs say once the backlog has drained."""

    statuses: dict[str, dict[str, Any]]
    problems: dict[str, str]
    seconds: float
    successes: Counter[str]

    @property
    def finals(self) -> Counter[str]:
        return Counter(str(body["status"]) for body in self.statuses.values())

    @property
    def failed_by_code(self) -> Counter[str]:
        return Counter(str(b["error_code"]) for b in self.statuses.values() if b["status"] == "Failed")

    @property
    def attempts(self) -> Counter[int]:
        return Counter(int(body["attempts"]) for body in self.statuses.values())

    @property
    def twice(self) -> dict[str, int]:
        return {job_id: n for job_id, n in self.successes.items() if n > 1}

    @property
    def logged_but_not_succeeded(self) -> list[str]:
        return [j for j in self.successes if j in self.statuses and self.statuses[j]["status"] != "Succeeded"]

    @property
    def succeeded_without_log(self) -> list[str]:
        return [j for j, b in self.statuses.items() if b["status"] == "Succeeded" and self.successes[j] == 0]


def judge(deployment: FaultDeployment, ledger: Ledger) -> Verdict:
    """Statuses from the database (the API reads the same rows), every result through the API."""
    started = time.monotonic()
    rows = deployment.sql("SELECT id::text, status, attempts, error_code FROM jobs")
    statuses = {row["id"]: row for row in rows if row["id"] in ledger.accepted}
    problems = asyncio.run(fetch_results(deployment, ledger, statuses))
    return Verdict(statuses, problems, time.monotonic() - started, deployment.successes())


def report(ledger: Ledger, chaos: Chaos, submission: float, drained: Drain, verdict: Verdict) -> None:
    record(SCENARIO, "requests sent / concurrency / users", f"{ledger.sent} / {CONCURRENCY} / {USERS}", "")
    record(SCENARIO, "answers by HTTP status", repr(dict(ledger.codes)), "")
    record(SCENARIO, "accepted (202)", len(ledger.accepted), "")
    record(SCENARIO, "503s", ledger.codes[503], "")
    record(SCENARIO, "transport errors / unexpected answers", len(ledger.errors), "")
    record(SCENARIO, "final statuses", repr(dict(verdict.finals)), "")
    record(SCENARIO, "failed by code", repr(dict(verdict.failed_by_code)), "")
    record(SCENARIO, "retried (attempts > 1)", sum(n for a, n in verdict.attempts.items() if a > 1), "")
    record(SCENARIO, "attempts distribution", repr(dict(sorted(verdict.attempts.items()))), "")
    record(SCENARIO, "ran to success twice (worker logs)", len(verdict.twice), "")
    record(
        SCENARIO,
        "Succeeded without a `job succeeded` line (killed after commit)",
        len(verdict.succeeded_without_log),
        "",
    )
    record(SCENARIO, "workers SIGKILLed / exited by themselves", f"{len(chaos.kills)} / {len(chaos.died)}", "")
    record(SCENARIO, f"Redis flushed once, {chaos.flushed_keys} keys lost", "yes" if chaos.flushed_at else "no", "")
    record(SCENARIO, "submission of all requests took", submission)
    record(SCENARIO, "throughput of generate", f"{ledger.sent / submission:.0f}", "req/s")
    if drained.finished is not None:
        record(SCENARIO, "chaos over -> every job terminal", drained.finished - drained.started)
        if chaos.kills:
            record(SCENARIO, "last kill -> every job terminal", drained.finished - chaos.kills[-1])
    else:
        record(SCENARIO, "chaos over -> jobs still unfinished after", DRAIN_LIMIT_SECONDS)
    if chaos.flushed_at is not None and drained.flushed_jobs_finished is not None:
        record(
            SCENARIO, "flush -> every job created before it terminal", drained.flushed_jobs_finished - chaos.flushed_at
        )
    record(SCENARIO, "checking every job's status and result took", verdict.seconds)


def test_soak_with_workers_killed_and_redis_flushed(faults: FaultDeployment) -> None:
    faults.env["REPORTGEN_WORKER_CONCURRENCY"] = "10"
    faults.up(workers=WORKERS, api_workers=API_WORKERS)
    report_id = faults.create_report(CHECKABLE)
    ledger = Ledger()
    halfway = threading.Event()
    chaos = Chaos(faults, halfway)

    started = time.monotonic()
    chaos.start()
    try:
        asyncio.run(submit(faults, report_id, ledger, halfway))
        submission = time.monotonic() - started
        chaos_deadline = time.monotonic() + CHAOS_LIMIT_SECONDS
        while not chaos.done and chaos.is_alive() and time.monotonic() < chaos_deadline:
            time.sleep(0.1)
    finally:
        chaos.stop.set()
        chaos.join(30)
    assert chaos.failure is None, repr(chaos.failure)
    drained = drain(faults, chaos)
    verdict = judge(faults, ledger)
    report(ledger, chaos, submission, drained, verdict)

    assert ledger.sent == TOTAL
    assert not chaos.died, f"workers that exited by themselves: {chaos.died}"
    assert not ledger.errors, ledger.errors[:10]
    assert not faults.server_errors(), faults.server_errors()[:5]
    assert ledger.unavailable_without_retry_after == 0
    assert len(chaos.kills) >= MIN_KILLS, "workers were killed every few seconds"
    assert chaos.flushed_at is not None, "Redis was flushed"
    assert not unfinished(faults), f"every accepted job is terminal (none stuck):\n{stuck_report(faults)}"
    assert len(verdict.statuses) == len(ledger.accepted), f"lost: {set(ledger.accepted) - set(verdict.statuses)}"
    assert set(verdict.finals) <= TERMINAL, verdict.finals
    assert set(verdict.failed_by_code) <= {"WORKER_LOST"}, verdict.failed_by_code
    assert not verdict.problems, dict(itertools.islice(verdict.problems.items(), 10))
    assert not verdict.twice, f"jobs that ran to success twice: {dict(itertools.islice(verdict.twice.items(), 10))}"
    assert not verdict.logged_but_not_succeeded, verdict.logged_but_not_succeeded[:10]
    strays = faults.sql("SELECT id::text, status, error_code FROM jobs")
    unknown = [row for row in strays if row["id"] not in ledger.accepted]
    assert all(row["status"] == "Failed" and row["error_code"] == "QUEUE_UNAVAILABLE" for row in unknown), unknown[:10]
    assert drained.finished is not None
    assert drained.finished - drained.started <= DRAIN_BUDGET_SECONDS, (
        f"the backlog took {drained.finished - drained.started:.0f} s to drain after the chaos "
        f"(budget {DRAIN_BUDGET_SECONDS:g} s: lease {faults.env['REPORTGEN_LEASE_SECONDS']} s, reconcile every "
        f"{faults.env['REPORTGEN_RECONCILE_INTERVAL_SECONDS']} s); {drained.stuck}"
    )
