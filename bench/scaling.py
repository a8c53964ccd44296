"""Scaling with workers: the same stream of small jobs through 1, 2 and 4 `reportgen worker` processes, with the CPU
each process (and PostgreSQL and Redis) used; then one large report running while small jobs keep arriving at a
steady rate, against the same stream alone, to show whether the small jobs' queue wait grows with the large one.

The jobs are inserted and enqueued as in the pipeline part (bench/pipeline.py). This machine has 2 cores: past two
processes, the workers share them with each other, PostgreSQL and Redis, and the figures say so.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from arq.connections import ArqRedis

from bench.fixtures import Fixtures, wait_terminal
from bench.floor_app import JOB_FUNCTION
from bench.noise import SHARED_SERVICES, _process_table
from bench.pipeline import enqueue_all, insert_jobs
from bench.procs import CLOCK_TICKS, Proc
from bench.stack import QUEUE_NAME, REDIS_URL, Stack
from infrastructure.arq.worker import LONG_JOB_SECONDS

WORKER_COUNTS = (1, 2, 4)
STREAM_RATE = 40
"""Small jobs per second in the large-report case: well under one worker's capacity, so a wait is contention."""
LARGE_ROWS = 12_000_000
STREAM_SECONDS = 6.0


def services_cpu() -> dict[str, float]:
    """CPU seconds of PostgreSQL's and Redis's processes, by service."""
    totals = dict.fromkeys(SHARED_SERVICES, 0.0)
    for fields in _process_table().values():
        for service in SHARED_SERVICES:
            if fields[0].startswith(service):
                totals[service] += (int(fields[12]) + int(fields[13])) / CLOCK_TICKS
    return totals


async def start_workers(stack: Stack, count: int) -> list[Proc]:
    """`count` workers, each started once the previous one polls the queue."""
    workers = []
    for index in range(count):
        name = "worker" if index == 0 else f"worker-{index + 1}"
        workers.append(await stack.start_worker(name=name))
    return workers


def stop_workers(stack: Stack, workers: list[Proc]) -> None:
    for worker in workers:
        stack.stop(worker.name)


async def stream(db: asyncpg.Connection, report: str, count: int, workers: list[Proc]) -> dict[str, Any]:
    """`count` small jobs enqueued at once; jobs/s until the last one finished, and everyone's CPU meanwhile."""
    redis = ArqRedis.from_url(REDIS_URL)
    try:
        ids = await insert_jobs(db, report, count, owner="bench-scaling")
        before = [worker.tree_cpu_seconds() for worker in workers]
        services_before, started = services_cpu(), time.time()
        await enqueue_all(redis, JOB_FUNCTION, QUEUE_NAME, ids)
        rows = await wait_terminal(db, ids, limit_seconds=max(120, count / 5))
    finally:
        await redis.aclose()
    seconds = max(float(row["finished"]) for row in rows) - started
    services_after = services_cpu()
    return {
        "workers": len(workers),
        "jobs": count,
        "seconds": round(seconds, 2),
        "jobs_per_second": round(count / seconds, 1),
        "not_succeeded": sum(row["status"] != "Succeeded" for row in rows),
        "worker_cpu_percent": [
            round(100 * (worker.tree_cpu_seconds() - cpu) / seconds, 1)
            for worker, cpu in zip(workers, before, strict=True)
        ],
        "services_cpu_percent": {
            name: round(100 * (services_after[name] - services_before[name]) / seconds, 1) for name in SHARED_SERVICES
        },
    }


async def steady_stream(db: asyncpg.Connection, report: str, seconds: float) -> list[asyncpg.Record]:
    """Small jobs at STREAM_RATE per second for `seconds`; their rows once all are terminal."""
    redis = ArqRedis.from_url(REDIS_URL)
    ids: list[str] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            batch = await insert_jobs(db, report, 1, owner="bench-stream")
            await enqueue_all(redis, JOB_FUNCTION, QUEUE_NAME, batch)
            ids += batch
            await asyncio.sleep(max(0.0, started + len(ids) / STREAM_RATE - time.monotonic()))
    finally:
        await redis.aclose()
    return await wait_terminal(db, ids, limit_seconds=120)


def waits(rows: list[asyncpg.Record]) -> dict[str, Any]:
    """Queue wait (created -> started) and time to result (created -> finished) of the small jobs, ms."""
    queued = sorted(1000 * (float(r["started"]) - float(r["created"])) for r in rows if r["started"] is not None)
    total = sorted(1000 * (float(r["finished"]) - float(r["created"])) for r in rows)
    return {
        "jobs": len(rows),
        "queue_wait_ms_p50": round(statistics.median(queued), 1),
        "queue_wait_ms_p95": round(queued[int(0.95 * (len(queued) - 1))], 1),
        "to_result_ms_p50": round(statistics.median(total), 1),
        "to_result_ms_p95": round(total[int(0.95 * (len(total) - 1))], 1),
    }


async def beside_large(stack: Stack, fixtures: Fixtures, db: asyncpg.Connection, workers: int) -> dict[str, Any]:
    """The steady stream alone, then while a LARGE_ROWS CSV report runs on the same workers."""
    procs = await start_workers(stack, workers)
    try:
        alone = waits(await steady_stream(db, fixtures.small_report, STREAM_SECONDS))
        [large_id] = await insert_jobs(db, fixtures.big_report, 1, owner="bench-large")
        await db.execute("UPDATE jobs SET parameters = $2::jsonb WHERE id = $1", large_id, f'{{"rows": {LARGE_ROWS}}}')
        redis = ArqRedis.from_url(REDIS_URL)
        try:
            await enqueue_all(redis, JOB_FUNCTION, QUEUE_NAME, [large_id])
        finally:
            await redis.aclose()
        while (await db.fetchval("SELECT status FROM jobs WHERE id = $1", large_id)) == "Queued":
            await asyncio.sleep(0.05)
        await asyncio.sleep(LONG_JOB_SECONDS + 1)  # a running report, as the workers see it: past "long"
        cpu_before = [proc.tree_cpu_seconds() for proc in procs]
        started, started_at = time.monotonic(), time.time()
        beside = await steady_stream(db, fixtures.small_report, STREAM_SECONDS)
        elapsed = time.monotonic() - started
        large = (await wait_terminal(db, [large_id], limit_seconds=600))[0]
        return {
            "workers": workers,
            "alone": alone,
            "beside_large": waits(beside),
            "large_status": large["status"],
            "large_seconds": round(float(large["finished"]) - float(large["started"]), 1),
            "large_ran_throughout": float(large["finished"]) >= started_at + STREAM_SECONDS,
            "large_bytes": large["artifact_size"],
            "worker_cpu_percent": [
                round(100 * (proc.tree_cpu_seconds() - cpu) / elapsed, 1)
                for proc, cpu in zip(procs, cpu_before, strict=True)
            ],
        }
    finally:
        stop_workers(stack, procs)


async def run_scaling(stack: Stack, fixtures: Fixtures, db: asyncpg.Connection, jobs: int) -> dict[str, Any]:
    stack.stop("worker")
    results: dict[str, Any] = {"streams": [], "large": []}
    for count in WORKER_COUNTS:
        print(f"bench: scaling, {count} worker(s), {jobs:,} jobs ...", flush=True)  # noqa: T201
        workers = await start_workers(stack, count)
        try:
            await stream(db, fixtures.small_report, 20 * count, workers)  # warm-up
            results["streams"].append(await stream(db, fixtures.small_report, jobs, workers))
        finally:
            stop_workers(stack, workers)
    for count in (1, 2):
        print(f"bench: scaling, a {LARGE_ROWS:,}-row report beside small jobs, {count} worker(s) ...", flush=True)  # noqa: T201
        results["large"].append(await beside_large(stack, fixtures, db, count))
    await stack.start_worker()  # as the other parts expect it
    return results
