"""`python -m bench` (`make bench`): reportgen's production mode against the floor on this machine; see README.md."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench import report
from bench.bigreport import run_bigreport
from bench.config import Options, parse
from bench.fixtures import create_fixtures, create_status_jobs
from bench.http_phase import ENDPOINTS, run_http
from bench.joblist import run_joblist
from bench.load import require_wrk
from bench.logscan import scan
from bench.noise import BUDGET, machine_cpu, set_budget
from bench.object_store import run_object_store
from bench.pipeline import run_pipeline
from bench.scaling import run_scaling
from bench.stack import PG_URL, ROOT, Stack
from bench.wait import run_wait

PACKAGES = ("litestar", "granian", "arq", "asyncpg", "sqlalchemy", "python-jose", "redis")


def busy_percent(seconds: float = 1.0) -> float:
    """How busy the machine is before we start (other people's tests make every figure noisier)."""
    busy, total = machine_cpu()
    time.sleep(seconds)
    busy_after, total_after = machine_cpu()
    return round(100 * (busy_after - busy) / max(total_after - total, 1), 1)


def meta(options: Options, stack: Stack) -> dict[str, Any]:
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)  # noqa: S607
    load = "worker running (drains both apps' jobs)" if options.worker_during_load else "worker stopped (both apps)"
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git.stdout.strip(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "busy_percent_before_start": busy_percent(),
        "python": platform.python_version(),
        "packages": {name: version(name) for name in PACKAGES},
        "options": options.__dict__,
        "during_http_load": load,
        "server": f"granian, {options.api_workers} workers, both apps",
        "run_dir": str(stack.run_dir),
    }


async def measure_all(options: Options, stack: Stack, results: dict[str, Any]) -> None:
    await stack.prepare()
    await stack.start_api()
    await stack.start_worker()
    fixtures = await create_fixtures(stack)
    db = await asyncpg.connect(PG_URL)
    try:
        endpoints = [part for part in options.parts if part in ENDPOINTS]
        if endpoints:
            await create_status_jobs(stack, fixtures, db)
            await stack.start_floor()
            results["http"] = await run_http(stack, fixtures, db, options, endpoints)
            stack.stop("floor")
        if "pipeline" in options.parts:
            print(f"bench: pipeline, {options.pipeline_jobs:,} jobs ...", flush=True)  # noqa: T201
            results["pipeline"] = await run_pipeline(stack, db, fixtures.small_report, options.pipeline_jobs)
        if "bigreport" in options.parts:
            results["bigreport"] = await run_bigreport(stack, fixtures, db, options.big_rows)
        if "joblist" in options.parts:
            results["joblist"] = await run_joblist(stack, fixtures, db)
        if "wait" in options.parts:
            results["wait"] = await run_wait(stack, fixtures, db)
        if "scaling" in options.parts:
            results["scaling"] = await run_scaling(stack, fixtures, db, options.pipeline_jobs)
        if "objectstore" in options.parts:
            jobs = options.pipeline_jobs // 2
            results["objectstore"] = await run_object_store(
                stack, db, fixtures.small_report, jobs, options.artifact_bytes
            )
    finally:
        await db.close()


def header(results: dict[str, Any], seconds: float) -> str:
    m = results["meta"]
    quick = (
        " QUICK MODE (smoke test: short runs, smaller sizes; not the figures the targets mean)"
        if m["options"]["quick"]
        else ""
    )
    return (
        f"reportgen bench {m['started']} git {m['git']}, {m['cpus']} cores, load avg at start "
        f"{m['loadavg_at_start'][0]:.2f}, CPU busy before start {m['busy_percent_before_start']:.0f} %, "
        f"{seconds:.0f} s.{quick}\n"
        f"HTTP: {m['server']}; wrk 2 threads, {m['options']['duration']} s after {m['options']['warmup']} s "
        f"warm-up; during the load: {m['during_http_load']}."
        + (f"\nService overrides: {m['options']['service_env']}" if m["options"]["service_env"] else "")
    )


async def main(options: Options) -> int:
    if set(options.parts) & set(ENDPOINTS):
        require_wrk()
    started = time.monotonic()
    set_budget(options.noise_budget)
    stack = Stack(Path(tempfile.mkdtemp(prefix="reportgen-bench-")), options.api_workers, options.service_env)
    results: dict[str, Any] = {"meta": meta(options, stack)}
    failure = None
    try:
        await measure_all(options, stack, results)
    except Exception:
        failure = traceback.format_exc()
        results["failure"] = failure
    finally:
        await stack.close()
        shutil.rmtree(stack.run_dir / "artifacts", ignore_errors=True)  # the logs stay
    results["logs"] = scan(stack.logs)
    results["meta"]["noise_budget_left_seconds"] = round(BUDGET["seconds"], 1)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "bench" / f"results-{stamp}.json"
    results["table"] = table = report.build(results) if failure is None else []
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if failure is not None:
        print(f"bench: FAILED\n{failure}\nlogs: {stack.logs}\nresults: {out}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"\n{header(results, time.monotonic() - started)}\n\n{report.render(table)}\n")  # noqa: T201
    print(f"results: {out}\nlogs: {stack.logs}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
