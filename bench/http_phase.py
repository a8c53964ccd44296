"""generate and status under wrk, reportgen and the floor app alternately, at each concurrency."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench.config import Options
from bench.fixtures import LOAD_OWNER_PREFIX, Fixtures, bearer, generate_body
from bench.load import Scenario, measure, write_script
from bench.noise import least_noisy, others_of
from bench.procs import Proc
from bench.stack import Stack

APPS = ("reportgen", "floor")
ENDPOINTS = ("generate", "status")


def scenario(endpoint: str, fixtures: Fixtures) -> Scenario:
    if endpoint == "generate":
        path = f"/api/v1/reports/{fixtures.small_report}/generate"
        items = [(path, token) for _, token in fixtures.users]
        return Scenario(endpoint, "POST", items, json.dumps(generate_body()))
    return Scenario(endpoint, "GET", [(f"/api/v1/jobs/{job}", token) for job, token in fixtures.status_jobs])


async def shapes(stack: Stack, fixtures: Fixtures) -> dict[str, Any]:
    """One request of each kind to each app: status codes and top-level keys must agree, or the load is unfair."""
    found: dict[str, Any] = {}
    token = fixtures.users[0][1]
    for app, url in (("reportgen", stack.api_url), ("floor", stack.floor_url)):
        async with httpx.AsyncClient(base_url=url, headers=bearer(token), timeout=10) as client:
            made = await client.post(f"/api/v1/reports/{fixtures.small_report}/generate", json=generate_body())
            read = await client.get(f"/api/v1/jobs/{fixtures.status_jobs[0][0]}")
        found[app] = {
            "generate": [made.status_code, sorted(made.json())],
            "status": [read.status_code, sorted(read.json())],
        }
    found["same"] = found["reportgen"] == found["floor"]
    return found


async def reset_queue(stack: Stack, db: asyncpg.Connection, worker_during_load: bool) -> None:
    """Forget the jobs a generate run made, so that no later run (or a worker's reconciler) works them off."""
    stack.stop("worker")
    await db.execute("DELETE FROM jobs WHERE owner_id LIKE $1 AND status = 'Queued'", LOAD_OWNER_PREFIX + "%")
    await stack.redis.flushdb()  # our own db number (15) only
    if worker_during_load:
        await stack.start_worker()


async def one_run(
    stack: Stack, db: asyncpg.Connection, options: Options, script: Path, server: tuple[str, Proc], connections: int
) -> dict[str, Any]:
    url, proc = server
    result, warm = await measure(url, script, connections, options.duration, options.warmup, proc)
    if script.stem == "generate":
        await reset_queue(stack, db, options.worker_during_load)
    return result.as_dict() | {"warmup_non2xx": int(warm.get("non2xx", 0))}


async def run_http(
    stack: Stack, fixtures: Fixtures, db: asyncpg.Connection, options: Options, endpoints: list[str]
) -> dict[str, Any]:
    results: dict[str, Any] = {"shapes": await shapes(stack, fixtures)}
    await reset_queue(stack, db, options.worker_during_load)
    servers = {"reportgen": (stack.api_url, stack.procs["api"]), "floor": (stack.floor_url, stack.procs["floor"])}
    for endpoint in endpoints:
        script = write_script(stack.run_dir, scenario(endpoint, fixtures))
        for connections in options.concurrencies:
            for app in APPS:
                url, proc = servers[app]
                print(f"bench: {endpoint} c{connections} {app} ...", flush=True)  # noqa: T201
                run = partial(one_run, stack, db, options, script, (url, proc), connections)
                entry, tries = await least_noisy(run, others_of)
                results.setdefault(endpoint, {}).setdefault(str(connections), {})[app] = entry | {"tries": tries}
    return results
