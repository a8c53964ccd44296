"""Job list: one service account with 100,000 jobs; page 1 against page 500 of `GET /api/v1/jobs?limit=20`.

The jobs are inserted straight into the service's table (the list reads rows; how they got there does not matter to
it). The client walks to page 500 by following `nextCursor`, then page 1 and page 500 are asked for in turn, each
request timed from the client (one connection, no other load).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench.fixtures import Fixtures, bearer, user_token
from bench.noise import wait_quiet
from bench.stack import Stack

OWNER = "bench-list"
JOBS = 100_000
PAGE, DEEP_PAGE, ROUNDS = 20, 500, 40

# Finished jobs of one owner, one a second back from now, in the columns a job row needs.
_INSERT = """
INSERT INTO jobs (id, report_id, owner_id, report_name, query, format, parameters, parameter_types, status, progress,
                  attempts, created_at, finished_at, version, holds_slot, csv_formula_escape)
SELECT gen_random_uuid(), $1::uuid, $2, 'bench-big', 'SELECT 1', 'csv', '{}'::jsonb, '{}'::jsonb, 'Failed', 0, 1,
       now() - make_interval(secs => g), now() - make_interval(secs => g), 1, false, false
FROM generate_series(1, $3) AS g
"""


async def run_joblist(stack: Stack, fixtures: Fixtures, db: asyncpg.Connection) -> dict[str, Any]:
    print(f"bench: job list, {JOBS:,} jobs of one owner ...", flush=True)  # noqa: T201
    await db.execute(_INSERT, fixtures.big_report, OWNER, JOBS)
    await db.execute("ANALYZE jobs")
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=bearer(user_token(stack, OWNER)), timeout=30
    ) as client:
        cursor = None
        for _ in range(DEEP_PAGE - 1):
            params: dict[str, Any] = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
            body = (await client.get("/api/v1/jobs", params=params)).raise_for_status().json()
            cursor = body["nextCursor"]
        await wait_quiet()
        first, deep = [], []
        for _ in range(ROUNDS):
            first.append(await _timed(client, {"limit": PAGE}))
            deep.append(await _timed(client, {"limit": PAGE, "cursor": cursor}))
    page_1, page_500 = statistics.median(first), statistics.median(deep)
    return {
        "jobs": JOBS,
        "page_size": PAGE,
        "page_1_ms": round(page_1, 2),
        "page_500_ms": round(page_500, 2),
        "ratio": round(page_500 / page_1, 3),
    }


async def _timed(client: httpx.AsyncClient, params: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = await client.get("/api/v1/jobs", params=params)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    if len(response.json()["items"]) != PAGE:
        raise RuntimeError(f"a page of the job list held {len(response.json()['items'])} jobs, not {PAGE}")
    return elapsed
