"""Big report: the 6-column report at each size in each streamed format (CSV, JSON, NDJSON, XLSX, Parquet) through a
freshly started worker (so that its peak RSS, /proc VmHWM, belongs to that one job), beside `COPY (same query) TO
STDOUT (FORMAT csv)` through psql; and once as a PDF with a line chart at the PDF's row cap.

Seconds are the job's `finished_at - created_at` (queue pickup included; the service's own clock on this
machine); COPY's are psql's wall time, process start included, writing to a file in the same directory.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from functools import partial
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench.fixtures import BIG_QUERY, Fixtures, bearer, generate_body, wait_terminal
from bench.noise import least_noisy, others_cpu, others_of, others_percent, wait_quiet
from bench.stack import DB_NAME, Stack

FORMATS = ("csv", "json", "ndjson", "xlsx", "parquet")
PDF_ROWS = 10_000
"""The PDF's default row cap (`REPORTGEN_PDF_MAX_ROWS`): its document of that many rows, chart included."""
MB = 1_000_000


def copy_seconds(stack: Stack, rows: int) -> dict[str, Any]:
    """`COPY (query) TO STDOUT (FORMAT csv, HEADER)` through psql into a file; wall time."""
    psql = shutil.which("psql")
    if psql is None:
        return {"error": "psql is not installed"}
    sql = f"COPY ({BIG_QUERY.replace(':rows', str(rows))}) TO STDOUT (FORMAT csv, HEADER)"
    target = stack.run_dir / "artifacts" / f"copy-{rows}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    argv = [psql, "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", DB_NAME, "-c", sql]
    with target.open("wb") as out:
        started = time.perf_counter()
        subprocess.run(argv, stdout=out, check=True, timeout=600)  # noqa: S603
        seconds = time.perf_counter() - started
    size = target.stat().st_size
    target.unlink()
    return {"seconds": round(seconds, 3), "rows_per_second": round(rows / seconds), "bytes": size}


WARM_UP_ROWS = 10
"""Rows of the job of the same format that each run's fresh worker does first."""


async def one_report(stack: Stack, fixtures: Fixtures, db: asyncpg.Connection, rows: int, fmt: str) -> dict[str, Any]:
    stack.stop("worker")
    worker = await stack.start_worker()
    idle_kb = worker.memory_kb("VmRSS")
    user_token = fixtures.users[0][1]
    async with httpx.AsyncClient(base_url=stack.api_url, headers=bearer(user_token), timeout=30) as client:
        # A worker that has run the format before, as a long-running one has: its library is imported (pyarrow,
        # rustpy-xlsxwriter, reportlab), which only a fresh process pays for. The peak RSS includes it.
        warm_up = await client.post(
            f"/api/v1/reports/{fixtures.big_report}/generate", json=generate_body(rows=WARM_UP_ROWS, fmt=fmt)
        )
        warm_up.raise_for_status()
        await wait_terminal(db, [warm_up.json()["jobId"]], limit_seconds=120)
        others, started = others_cpu(), time.monotonic()
        response = await client.post(
            f"/api/v1/reports/{fixtures.big_report}/generate", json=generate_body(rows=rows, fmt=fmt)
        )
    response.raise_for_status()
    job = (await wait_terminal(db, [response.json()["jobId"]], limit_seconds=600))[0]
    peak_kb = worker.memory_kb("VmHWM")
    seconds = float(job["finished"]) - float(job["created"])
    return {
        "rows": rows,
        "format": fmt,
        "status": job["status"],
        "error_code": job["error_code"],
        "seconds": round(seconds, 3),
        "run_seconds": round(float(job["finished"]) - float(job["started"] or job["created"]), 3),
        "rows_per_second": round(rows / seconds),
        "bytes": job["artifact_size"],
        "worker_idle_rss_mb": round(idle_kb * 1024 / MB, 1),
        "worker_peak_rss_mb": round(peak_kb * 1024 / MB, 1),
        "others_cpu_percent": others_percent(others, time.monotonic() - started),
    }


def _delete_artifacts(stack: Stack) -> None:
    """1M-row files add up; the directory itself stays (the service owns it)."""
    for path in (stack.run_dir / "artifacts").rglob("*"):
        if path.is_file():
            path.unlink(missing_ok=True)


async def run_bigreport(
    stack: Stack, fixtures: Fixtures, db: asyncpg.Connection, sizes: tuple[int, ...]
) -> dict[str, Any]:
    results: dict[str, Any] = {"copy": {}, "runs": []}
    for rows in sizes:
        print(f"bench: big report {rows:,} rows: COPY ...", flush=True)  # noqa: T201
        await wait_quiet()
        results["copy"][str(rows)] = await asyncio.to_thread(copy_seconds, stack, rows)
        for fmt in FORMATS:
            print(f"bench: big report {rows:,} rows: {fmt} ...", flush=True)  # noqa: T201
            run, tries = await least_noisy(partial(one_report, stack, fixtures, db, rows, fmt), others_of)
            run["tries"] = tries
            copy = results["copy"][str(rows)]
            run["ratio_to_copy"] = round(copy["seconds"] / run["seconds"], 3) if "seconds" in copy else None
            results["runs"].append(run)
            _delete_artifacts(stack)
    print(f"bench: big report {PDF_ROWS:,} rows: pdf ...", flush=True)  # noqa: T201
    run, tries = await least_noisy(partial(one_report, stack, fixtures, db, PDF_ROWS, "pdf"), others_of)
    results["pdf"] = {**run, "tries": tries}
    _delete_artifacts(stack)
    return results
