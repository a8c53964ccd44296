"""Job pipeline: N small jobs through one `reportgen worker`, then N no-op jobs through one bare arq worker.

reportgen: the job rows are inserted first (one statement, not timed; the same columns that generate writes),
then the clock starts and every job is enqueued straight to arq (function, arq job id and queue as the API
does it); the clock stops at the latest `finished_at` once every row is terminal. Bare arq: the same
enqueue, and the clock stops when arq's queue is empty (arq removes a job from it when the job has finished).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg  # type: ignore[import-untyped]
from arq.connections import ArqRedis

from bench.fixtures import SMALL_ROWS, wait_terminal
from bench.floor_app import INSERT_JOB, JOB_FUNCTION
from bench.noise import least_noisy, others_cpu, others_of, others_percent
from bench.stack import NOOP_QUEUE, QUEUE_NAME, REDIS_URL, Stack

ENQUEUE_CONCURRENCY = 32


async def enqueue_all(redis: ArqRedis, function: str, queue: str, job_ids: list[str]) -> None:
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one(job_id: str) -> None:
        async with gate:
            await redis.enqueue_job(function, job_id, _job_id=f"{job_id}:1", _queue_name=queue)

    await asyncio.gather(*(one(job_id) for job_id in job_ids))


async def insert_jobs(db: asyncpg.Connection, report_id: str, count: int, owner: str = "bench-pipeline") -> list[str]:
    report = await db.fetchrow("SELECT name, query FROM reports WHERE id = $1", report_id)
    ids = [uuid4() for _ in range(count)]
    params, types = json.dumps({"rows": SMALL_ROWS}), json.dumps({"rows": "integer"})
    now = datetime.now(UTC)
    rows = [(i, report_id, owner, report["name"], report["query"], "csv", params, types, now, None) for i in ids]
    await db.executemany(INSERT_JOB, rows)
    return [str(i) for i in ids]


async def reportgen_batch(stack: Stack, db: asyncpg.Connection, redis: ArqRedis, report: str, n: int) -> dict[str, Any]:
    ids = await insert_jobs(db, report, n)
    worker = stack.procs["worker"]
    cpu_before, others, started = worker.tree_cpu_seconds(), others_cpu(), time.time()
    await enqueue_all(redis, JOB_FUNCTION, QUEUE_NAME, ids)
    enqueued = time.time() - started
    rows = await wait_terminal(db, ids, limit_seconds=max(120, n / 10))
    seconds = max(float(row["finished"]) for row in rows) - started
    failed = sum(row["status"] != "Succeeded" for row in rows)
    cpu = worker.tree_cpu_seconds() - cpu_before
    return _figures(n, seconds, enqueued, cpu) | {
        "not_succeeded": failed,
        "others_cpu_percent": others_percent(others, seconds),
    }


async def bare_batch(stack: Stack, redis: ArqRedis, n: int) -> dict[str, Any]:
    ids = [str(uuid4()) for _ in range(n)]
    worker = stack.procs["noop-worker"]
    cpu_before, others, started = worker.tree_cpu_seconds(), others_cpu(), time.time()
    await enqueue_all(redis, "noop", NOOP_QUEUE, ids)
    enqueued = time.time() - started
    deadline = time.monotonic() + max(120, n / 10)
    while await redis.zcard(NOOP_QUEUE) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bare arq: {n} no-op jobs not done after {max(120, n / 10)} s")
        await asyncio.sleep(0.005)
    seconds = time.time() - started
    cpu = worker.tree_cpu_seconds() - cpu_before
    return _figures(n, seconds, enqueued, cpu) | {"others_cpu_percent": others_percent(others, seconds)}


def _figures(n: int, seconds: float, enqueued: float, cpu: float) -> dict[str, Any]:
    return {
        "jobs": n,
        "seconds": round(seconds, 3),
        "jobs_per_second": round(n / seconds, 1),
        "enqueue_seconds": round(enqueued, 3),
        "worker_cpu_ms_per_job": round(1000 * cpu / n, 3),
    }


async def run_pipeline(stack: Stack, db: asyncpg.Connection, report: str, n: int) -> dict[str, Any]:
    redis = ArqRedis.from_url(REDIS_URL)
    try:
        if "worker" not in stack.procs:
            await stack.start_worker()
        await reportgen_batch(stack, db, redis, report, 20)  # warm-up: imports, pools, caches
        real, real_tries = await least_noisy(lambda: reportgen_batch(stack, db, redis, report, n), others_of)
        stack.stop("worker")
        await stack.start_worker(bare=True)
        await bare_batch(stack, redis, 20)
        bare, bare_tries = await least_noisy(lambda: bare_batch(stack, redis, n), others_of)
        stack.stop("noop-worker")
    finally:
        await redis.aclose()
    real["tries"], bare["tries"] = real_tries, bare_tries
    return {"reportgen": real, "bare_arq": bare, "ratio": round(real["jobs_per_second"] / bare["jobs_per_second"], 3)}
