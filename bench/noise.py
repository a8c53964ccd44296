"""Other people's work on this shared machine: how much CPU it took during a measurement, waiting for a quiet
moment, and measuring again when a run was disturbed, all within a time budget."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.procs import CLOCK_TICKS

T = TypeVar("T")

SHARED_SERVICES = ("postgres", "redis-server")


def _process_table() -> dict[int, list[str]]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            table[int(entry.name)] = [name, *text[text.rindex(")") + 2 :].split()]
    return table


def others_cpu() -> dict[int, float]:
    """CPU seconds of every process that is neither this run (us and our children) nor PostgreSQL or Redis:
    other people's work on a shared machine, which makes the figures of that moment noisier."""
    table = _process_table()
    ours, frontier = {os.getpid()}, {os.getpid()}
    while frontier:
        frontier = {pid for pid, fields in table.items() if int(fields[2]) in frontier} - ours
        ours |= frontier
    return {
        pid: (int(fields[12]) + int(fields[13])) / CLOCK_TICKS
        for pid, fields in table.items()
        if pid not in ours and not fields[0].startswith(SHARED_SERVICES)
    }


def others_percent(before: dict[int, float], seconds: float) -> float:
    """Share of the machine's CPU (all cores) that others used since `before` was taken."""
    used = sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in others_cpu().items())
    return round(100 * used / (seconds * (os.cpu_count() or 1)), 1)


QUIET_PERCENT = 10.0
BUDGET = {"seconds": 120.0}
"""What the whole run may spend waiting for quiet and measuring again (set_budget); then it takes what it gets."""


def set_budget(seconds: float) -> None:
    BUDGET["seconds"] = seconds


async def wait_quiet(limit_seconds: float = 20) -> float:
    """Wait (at most `limit_seconds`, within the budget) until others use under QUIET_PERCENT of the machine for a
    second; the last share seen."""
    deadline = time.monotonic() + min(limit_seconds, BUDGET["seconds"])
    while True:
        before, started = others_cpu(), time.monotonic()
        await asyncio.sleep(1)
        share = others_percent(before, 1)
        if share < QUIET_PERCENT or time.monotonic() > deadline:
            return share
        BUDGET["seconds"] -= time.monotonic() - started


NOISY_RETRIES = 2


async def least_noisy(measure: Callable[[], Awaitable[T]], noise: Callable[[T], float]) -> tuple[T, int]:
    """Run `measure` again (at most NOISY_RETRIES times) while others used QUIET_PERCENT or more of the machine
    during it; the quietest result and the number of tries."""
    await wait_quiet()
    started = time.monotonic()
    best, tries = await measure(), 1
    while noise(best) >= QUIET_PERCENT and tries <= NOISY_RETRIES and BUDGET["seconds"] > time.monotonic() - started:
        BUDGET["seconds"] -= time.monotonic() - started
        await wait_quiet()
        started = time.monotonic()
        result, tries = await measure(), tries + 1
        best = result if noise(result) < noise(best) else best
    return best, tries


def others_of(figures: dict[str, Any]) -> float:
    return float(figures["others_cpu_percent"])


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    values = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)
