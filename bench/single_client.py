"""One client's generate: a single service account's token (an external system feeding reportgen), the worker
stopped, so that its Queued backlog grows as it would while workers are down or behind. An admin has given the
account no limit of active jobs (`PUT /api/v1/users/{id}/job-limit`, 0), as a deployment with such a client does.

Per concurrency, a service account of its own starts from an empty backlog: reportgen, then the floor (whose job
rows are the same account's too). Its backlog is then topped up to `Options.backlog` Queued jobs (rows inserted
and enqueued to arq as the API does, not timed) and both run again. Nothing is deleted in between; the backlog
before and after each run is recorded, so that the CPU per request at ~0 and at the deep backlog can be compared.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from arq.connections import ArqRedis

from bench.config import Options
from bench.fixtures import Fixtures, generate_body, lift_limit, user_token
from bench.floor_app import JOB_FUNCTION
from bench.load import Scenario, write_script
from bench.noise import least_noisy, others_of
from bench.pipeline import enqueue_all, insert_jobs
from bench.procs import Proc
from bench.stack import QUEUE_NAME, REDIS_URL, Stack

CLIENT_PREFIX = "bench-client-"
STATES = ("empty", "deep")
OneRun = Callable[[asyncpg.Connection, Options, Path, tuple[str, Proc], int], Awaitable[dict[str, Any]]]


async def backlog(db: asyncpg.Connection, owner: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM jobs WHERE owner_id = $1 AND status = 'Queued'", owner))


async def top_up(db: asyncpg.Connection, report: str, owner: str, target: int) -> int:
    """Queued jobs of `owner` up to `target`: rows inserted, then enqueued to arq; how many were added."""
    missing = max(0, target - await backlog(db, owner))
    if missing:
        ids = await insert_jobs(db, report, missing, owner=owner)
        redis = ArqRedis.from_url(REDIS_URL)
        try:
            await enqueue_all(redis, JOB_FUNCTION, QUEUE_NAME, ids)
        finally:
            await redis.aclose()
    return missing


async def run_single_client(
    stack: Stack,
    fixtures: Fixtures,
    db: asyncpg.Connection,
    options: Options,
    servers: dict[str, tuple[str, Proc]],
    one_run: OneRun,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    path = f"/api/v1/reports/{fixtures.small_report}/generate"
    for connections in options.concurrencies:
        owner = f"{CLIENT_PREFIX}c{connections}"
        await lift_limit(stack, fixtures, owner)
        items = [(path, user_token(stack, owner))]
        script = write_script(stack.run_dir, Scenario(owner, "POST", items, json.dumps(generate_body())))
        entry: dict[str, Any] = {"owner": owner}
        for state in STATES:
            if state == "deep":
                print(f"bench: one client c{connections}: backlog up to {options.backlog:,} ...", flush=True)  # noqa: T201
                entry["seeded"] = await top_up(db, fixtures.small_report, owner, options.backlog)
            for app, server in servers.items():
                print(f"bench: one client c{connections} {app}, {state} backlog ...", flush=True)  # noqa: T201
                before = await backlog(db, owner)
                run, tries = await least_noisy(partial(one_run, db, options, script, server, connections), others_of)
                after = await backlog(db, owner)
                backlogs = {"backlog_before": before, "backlog_after": after}
                entry.setdefault(state, {})[app] = run | {"tries": tries} | backlogs
        results[str(connections)] = entry
    return results
