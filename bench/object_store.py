"""Object storage: one large artifact written and read through each store (local directory, S3 on a moto server on
loopback), and what S3 costs per job: the pipeline's small jobs with the worker's artifacts in S3, then on disk.

moto is a Python server: on this machine it, not the client, bounds the S3 figures, and it shares the 2 cores
with the worker; its CPU is reported beside them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from arq.connections import ArqRedis

from bench.pipeline import reportgen_batch
from bench.procs import BIN, cpu_seconds
from bench.stack import REDIS_URL, Stack
from tests.s3_server import S3Server, s3_server


def large_artifact(kind: str, size: int, where: str, env: dict[str, str], server_pid: int | None) -> dict[str, Any]:
    server_cpu = cpu_seconds([server_pid]) if server_pid else 0.0
    done = subprocess.run(  # noqa: S603
        [str(BIN / "python"), "-m", "bench.object_store_child", kind, str(size), where],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"object store child ({kind}) failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout)
    if server_pid:
        figures["server_cpu_seconds"] = round(cpu_seconds([server_pid]) - server_cpu, 1)
    return figures


EVERY_ARTIFACT_IN_THE_STORE = {"REPORTGEN_INLINE_ARTIFACT_MAX_BYTES": "0"}
"""What a store costs per job is measured with no artifact kept in the database (the pipeline case has the default)."""


async def per_job(stack: Stack, db: asyncpg.Connection, report: str, jobs: int, env: dict[str, str]) -> dict[str, Any]:
    """The pipeline's small jobs through one worker started with `env` (then stopped)."""
    stack.stop("worker")
    saved = dict(stack.env)
    stack.env |= env
    redis = ArqRedis.from_url(REDIS_URL)
    try:
        await stack.start_worker()
        await reportgen_batch(stack, db, redis, report, 20)  # warm-up
        return await reportgen_batch(stack, db, redis, report, jobs)
    finally:
        stack.stop("worker")
        stack.env = saved
        await redis.aclose()


async def run_object_store(
    stack: Stack, db: asyncpg.Connection, report: str, jobs: int, artifact_bytes: int
) -> dict[str, Any]:
    print(f"bench: object store, {artifact_bytes >> 20:,} MiB artifact and {jobs:,} jobs ...", flush=True)  # noqa: T201
    results: dict[str, Any] = {}
    with s3_server(stack.logs) as s3:
        bucket = s3.bucket()
        url = f"s3://{bucket}/bench"
        child_env = stack.env | s3.env()
        local_dir = stack.run_dir / "artifacts-large"
        results["large_local"] = await asyncio.to_thread(
            large_artifact, "local", artifact_bytes, str(local_dir), child_env, None
        )
        results["large_s3"] = await asyncio.to_thread(
            large_artifact, "s3", artifact_bytes, url, child_env, s3.process.pid
        )
        server_before = cpu_seconds([s3.process.pid])
        s3_env = s3.env() | {"REPORTGEN_ARTIFACT_URL": url} | EVERY_ARTIFACT_IN_THE_STORE
        results["jobs_s3"] = await per_job(stack, db, report, jobs, s3_env)
        results["jobs_s3"]["server_cpu_ms_per_job"] = round(
            1000 * (cpu_seconds([s3.process.pid]) - server_before) / jobs, 3
        )
        results["server_peak_rss_mb"] = _peak_rss_mb(s3)
    results["jobs_local"] = await per_job(stack, db, report, jobs, EVERY_ARTIFACT_IN_THE_STORE)
    await stack.start_worker()  # as the other parts expect it
    return results


def _peak_rss_mb(s3: S3Server) -> float:
    status = Path(f"/proc/{s3.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)
