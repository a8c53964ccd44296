"""HTTP load with wrk: a generated Lua script per scenario, one warm-up and one measured run, parsed results."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.noise import machine_cpu, others_cpu, others_percent
from bench.procs import Proc, cpu_seconds

TEMPLATE = Path(__file__).with_name("load.lua")
WRK_THREADS = 2  # one per core; wrk shares the machine with the servers under test
MARKER = "BENCH-RESULT "


@dataclass(frozen=True)
class Scenario:
    """What one wrk run sends: `items` are (path, token) pairs that the requests cycle through."""

    name: str
    method: str
    items: list[tuple[str, str]]
    body: str | None = None


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    codes: dict[str, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    server_cpu_ms_per_request: float = 0.0
    database_cpu_ms_per_request: float = 0.0
    """CPU of the PostgreSQL backends connected to the bench database (the apps' pools), per request."""
    machine_busy_percent: float = 0.0
    others_cpu_percent: float = 0.0
    """CPU that processes outside this run (not PostgreSQL, not Redis) used meanwhile: noise."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit(
            "bench: wrk is not installed. It is a Debian/Ubuntu package:\n"
            "    sudo apt-get update && sudo apt-get install -y wrk\n"
            "(macOS: brew install wrk; elsewhere build it from https://github.com/wg/wrk)"
        )
    return wrk


def write_script(directory: Path, scenario: Scenario) -> Path:
    items = ",\n".join(f'  {{"{path}", "{token}"}}' for path, token in scenario.items)
    body = "nil" if scenario.body is None else f"[==[{scenario.body}]==]"
    prelude = f'bench_method = "{scenario.method}"\nbench_body = {body}\nbench_items = {{\n{items}\n}}\n\n'
    path = directory / f"{scenario.name}.lua"
    path.write_text(prelude + TEMPLATE.read_text())
    return path


async def _wrk(base_url: str, script: Path, connections: int, seconds: int) -> dict[str, Any]:
    argv = [require_wrk(), f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{seconds}s"]
    argv += ["--timeout", "10s", "-s", str(script), base_url]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=seconds + 60)
    text = output.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith(MARKER):
            parsed: dict[str, Any] = json.loads(line.removeprefix(MARKER))
            return parsed
    raise RuntimeError(f"wrk printed no result (exit {process.returncode}):\n{text}")


DatabasePids = Callable[[], Awaitable[list[int]]]


async def measure(
    base_url: str, script: Path, connections: int, seconds: int, warmup: int, server: Proc, db_pids: DatabasePids
) -> tuple[LoadResult, dict[str, Any]]:
    """A warm-up run (its result is returned raw, for its errors), then the measured one. The database backends
    are the ones connected after the warm-up (the pools have grown by then)."""
    warm = await _wrk(base_url, script, connections, warmup) if warmup > 0 else {}
    backends = await db_pids()
    db_before = cpu_seconds(backends)
    cpu_before, (busy_before, total_before), others = server.tree_cpu_seconds(), machine_cpu(), others_cpu()
    raw = await _wrk(base_url, script, connections, seconds)
    cpu = server.tree_cpu_seconds() - cpu_before
    db_cpu = cpu_seconds(backends) - db_before
    busy_after, total_after = machine_cpu()
    requests, duration = int(raw["requests"]), raw["duration_us"] / 1e6
    result = LoadResult(
        requests=requests,
        seconds=round(duration, 3),
        rps=round(requests / duration, 1),
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        non2xx=int(raw["non2xx"]),
        codes=raw["codes"],
        socket_errors=raw["socket_errors"],
        server_cpu_ms_per_request=round(1000 * cpu / max(requests, 1), 3),
        database_cpu_ms_per_request=round(1000 * db_cpu / max(requests, 1), 3),
        machine_busy_percent=round(100 * (busy_after - busy_before) / max(total_after - total_before, 1), 1),
        others_cpu_percent=others_percent(others, duration),
    )
    return result, warm
