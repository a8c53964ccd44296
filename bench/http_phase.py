"""generate and status under wrk, reportgen and the floor app alternately, at each concurrency; then one client's
generate over a growing backlog (single_client.py)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench.config import Options
from bench.cpu_in_turn import cpu_in_turn, summary
from bench.fixtures import LOAD_OWNER_PREFIX, Fixtures, bearer, generate_body
from bench.load import Scenario, measure, write_script
from bench.noise import least_noisy, others_of
from bench.procs import Proc
from bench.single_client import CLIENT_PREFIX, run_single_client
from bench.stack import DB_NAME, Stack

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


async def backend_pids(db: asyncpg.Connection) -> list[int]:
    """The PostgreSQL backends connected to the bench database, but for this connection: the apps' pools."""
    query = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
    return [row["pid"] for row in await db.fetch(query, DB_NAME)]


async def one_run(
    db: asyncpg.Connection, options: Options, script: Path, server: tuple[str, Proc], connections: int
) -> dict[str, Any]:
    url, proc = server
    pids = partial(backend_pids, db)
    result, warm = await measure(url, script, connections, options.duration, options.warmup, proc, pids)
    return result.as_dict() | {"warmup_non2xx": int(warm.get("non2xx", 0))}


async def clear_backlog(stack: Stack, db: asyncpg.Connection) -> int:
    """After every HTTP case: the Queued jobs they left (load users and single clients) go, so that the job pipeline
    measures its own jobs; the worker is stopped first. The number of jobs deleted."""
    stack.stop("worker")
    owners = [LOAD_OWNER_PREFIX + "%", CLIENT_PREFIX + "%"]
    deleted = await db.fetchval(
        "WITH gone AS (DELETE FROM jobs WHERE owner_id LIKE ANY($1::text[]) AND status = 'Queued' RETURNING 1)"
        " SELECT count(*) FROM gone",
        owners,
    )
    await stack.redis.flushdb()  # our own db number (15) only
    return int(deleted)


def median_run(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median req/s among an app's rounds (all its figures from that one run), with every round's req/s
    beside it."""
    ordered = sorted(entries, key=lambda entry: float(entry["rps"]))
    return ordered[(len(ordered) - 1) // 2] | {"rounds_rps": [round(float(e["rps"]), 1) for e in entries]}


PROCESS_OF = {"reportgen": "api", "reportgen_warning": "api-warning", "floor": "floor"}
"""The stack's process name of each app."""


def server_of(stack: Stack, app: str) -> tuple[str, Proc]:
    url = {"reportgen": stack.api_url, "reportgen_warning": stack.quiet_api_url}.get(app, stack.floor_url)
    return url, stack.procs[PROCESS_OF[app]]


async def start_fresh(stack: Stack, app: str) -> None:
    """A server of `app` started for what follows; its earlier process, if one runs, is stopped first."""
    stack.stop(PROCESS_OF[app])
    if app == "floor":
        await stack.start_floor()
    else:
        await stack.start_api(quiet=app == "reportgen_warning")


async def many_users_run(stack: Stack, db: asyncpg.Connection, options: Options, script: Path, app: str, c: int) -> Any:
    """One app's run, on a server started for it: every app of the comparison alike, so that none has the advantage
    of a process that has run for minutes (two servers both at WARNING measured the long-running one 1.05-1.09x
    faster than one started for the run). The WARNING server runs only for its own runs (its pool would hold
    connections)."""
    await start_fresh(stack, app)
    try:
        return await least_noisy(partial(one_run, db, options, script, server_of(stack, app), c), others_of)
    finally:
        stack.stop("api-warning")


async def status_cpu_in_turn(stack: Stack, fixtures: Fixtures, options: Options) -> dict[str, Any]:
    """The three status servers side by side, one client, one request at a time, taken in turn: CPU per request
    (cpu_in_turn.py). The servers are started afresh `starts` times, in one order and then in the other, with a few
    rounds each: a server's processes are one draw of what differs from start to start (see cpu_in_turn.py)."""
    print("bench: status CPU per request, the servers in turn ...", flush=True)  # noqa: T201
    job, token = fixtures.status_jobs[0]
    apps = ("reportgen", "reportgen_warning", "floor")
    requests, starts, rounds = (300, 2, 1) if options.quick else (2_000, 8, 2)
    per_request: dict[str, list[float]] = {app: [] for app in apps}
    try:
        for start in range(starts):
            for app in apps if start % 2 == 0 else apps[::-1]:
                await start_fresh(stack, app)
            servers = {app: server_of(stack, app) for app in apps}
            measured = await cpu_in_turn(servers, f"/api/v1/jobs/{job}", token, requests=requests, rounds=rounds)
            for app in apps:
                per_request[app] += measured[app]
    finally:
        stack.stop("api-warning")
    return summary(per_request, requests) | {"starts": starts, "rounds_per_start": rounds}


async def run_http(
    stack: Stack, fixtures: Fixtures, db: asyncpg.Connection, options: Options, endpoints: list[str]
) -> dict[str, Any]:
    """The many-users case (reportgen at INFO, at WARNING when started, the floor), then the single client's
    generate. Nothing is deleted between runs: the Queued backlog grows as it would in production."""
    results: dict[str, Any] = {"shapes": await shapes(stack, fixtures)}
    if not options.worker_during_load:
        stack.stop("worker")
    apps = ("reportgen", "reportgen_warning", "floor") if options.warning_run else ("reportgen", "floor")
    for endpoint in endpoints:
        script = write_script(stack.run_dir, scenario(endpoint, fixtures))
        for connections in options.concurrencies:
            runs: dict[str, list[dict[str, Any]]] = {app: [] for app in apps}
            for round_ in range(1, options.rounds + 1):  # the apps in turn, round after round: drift hits all alike
                # Each round starts with the next app: a run's place in the round measured worth 5-10 % (INFO
                # against WARNING was 0.86-0.90x run first, 0.95-1.04x run second), so every app takes every place.
                shift = (round_ - 1) % len(apps)
                for app in (*apps[shift:], *apps[:shift]):
                    print(f"bench: {endpoint} c{connections} {app}, round {round_} ...", flush=True)  # noqa: T201
                    entry, tries = await many_users_run(stack, db, options, script, app, connections)
                    runs[app].append(entry | {"tries": tries})
            for app, entries in runs.items():
                results.setdefault(endpoint, {}).setdefault(str(connections), {})[app] = median_run(entries)
    if "status" in endpoints and options.warning_run:
        results["status_cpu_in_turn"] = await status_cpu_in_turn(stack, fixtures, options)
    if "generate" in endpoints:
        one = {app: server_of(stack, app) for app in ("reportgen", "floor")}
        results["single_client"] = await run_single_client(stack, fixtures, db, options, one, one_run)
    results["backlog_deleted_after"] = await clear_backlog(stack, db)
    if options.worker_during_load:
        await stack.start_worker()
    return results
