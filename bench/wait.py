"""Waiting instead of polling (`GET /api/v1/jobs/{id}?wait=`), on an API of one process beside the worker.

1. Idle waiters: WAITERS requests wait on jobs that do not finish (Running rows with a lease far ahead, inserted
   straight into the table, so neither the worker nor the reconciler touches them). Measured while they wait: the
   API process's CPU, and the service connections open in PostgreSQL (a waiter holds none).
2. Latency, with the idle waiters still waiting: a client submits a small report and at once waits on it, SAMPLES
   times in a row. Timed: POST to the terminal status seen by the waiting client, and the worker's commit (the job's
   `finishedAt`, stamped just before it) to the client's receipt of the answer.
The reference is what a client following `Retry-After` sees at best: the first poll after POLL_AFTER seconds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench.fixtures import Fixtures, bearer, user_token
from bench.noise import wait_quiet
from bench.procs import BIN, free_port
from bench.stack import Stack, wait_http

OWNER = "bench-wait"
WAITERS = 1000
SAMPLES = 100
IDLE_SECONDS = 10.0
WAIT_SECONDS = 60
POLL_AFTER = 2  # REPORTGEN_POLL_AFTER_SECONDS's default

_INSERT_RUNNING = """
INSERT INTO jobs (id, report_id, owner_id, report_name, query, format, parameters, parameter_types, status, progress,
                  attempts, created_at, started_at, lease_expires_at, version, holds_slot, csv_formula_escape)
SELECT gen_random_uuid(), $1::uuid, $2, 'bench-small', 'SELECT 1', 'csv', '{}'::jsonb, '{}'::jsonb, 'Running', 0, 1,
       now(), now(), now() + interval '1 hour', 1, false, false
FROM generate_series(1, $3)
RETURNING id
"""


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def run_wait(stack: Stack, fixtures: Fixtures, db: asyncpg.Connection) -> dict[str, Any]:
    print(f"bench: wait, {WAITERS:,} idle waiters and {SAMPLES} waited jobs on one API process ...", flush=True)  # noqa: T201
    url = f"http://127.0.0.1:{free_port()}"
    api = stack._start("api-wait", str(BIN / "reportgen"), "serve", "--port", url.rsplit(":", 1)[1], "--workers", "1")
    await wait_http(f"{url}/health/ready", api)
    idle_ids = [str(r["id"]) for r in await db.fetch(_INSERT_RUNNING, fixtures.small_report, OWNER, WAITERS)]
    limits = httpx.Limits(max_connections=WAITERS + 50, max_keepalive_connections=WAITERS + 50)
    headers = bearer(user_token(stack, OWNER))
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=WAIT_SECONDS + 30, limits=limits) as client:
        waiting = [
            asyncio.create_task(client.get(f"/api/v1/jobs/{job_id}", params={"wait": str(WAIT_SECONDS)}))
            for job_id in idle_ids
        ]
        await asyncio.sleep(3)  # every waiter connected and asleep
        await wait_quiet()
        connections = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'reportgen' AND state <> 'idle'"
        )
        cpu_before, started = api.tree_cpu_seconds(), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        idle_cpu = 100 * (api.tree_cpu_seconds() - cpu_before) / (time.monotonic() - started)
        answered_early = sum(task.done() for task in waiting)

        to_terminal, commit_to_answer = [], []
        for _ in range(SAMPLES):
            posted = time.monotonic()
            accepted = await client.post(f"/api/v1/reports/{fixtures.small_report}/generate", json={"format": "csv"})
            accepted.raise_for_status()
            answer = await client.get(accepted.json()["statusUrl"], params={"wait": str(WAIT_SECONDS)})
            received_at = datetime.now(UTC)
            to_terminal.append((time.monotonic() - posted) * 1000)
            body = answer.json()
            if body["status"] != "Succeeded":
                raise RuntimeError(f"a waited job answered {body['status']}, not Succeeded")
            finished = datetime.fromisoformat(body["finishedAt"].replace("Z", "+00:00"))
            commit_to_answer.append((received_at - finished).total_seconds() * 1000)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    stack.stop("api-wait")
    await db.execute("DELETE FROM jobs WHERE owner_id = $1 AND status = 'Running'", OWNER)
    return {
        "waiters": WAITERS,
        "idle_api_cpu_percent": round(idle_cpu, 2),
        "busy_service_connections_while_waiting": connections,
        "answered_before_their_time": answered_early,
        "samples": SAMPLES,
        "post_to_terminal_ms": {
            "p50": round(statistics.median(to_terminal), 1),
            "p99": round(_percentile(to_terminal, 0.99), 1),
        },
        "commit_to_answer_ms": {
            "p50": round(statistics.median(commit_to_answer), 1),
            "p99": round(_percentile(commit_to_answer, 0.99), 1),
        },
        "polling_reference_ms": POLL_AFTER * 1000,
    }
