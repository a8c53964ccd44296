"""CPU per request of servers running side by side, one client sending one request at a time, the servers taken in
turn: a comparison that resolves a few per cent on this machine, where wrk's req/s for the same code moved by more
than that between runs of one minute (see README, "Pricing the access line").

Each round sends `requests` status requests to each server in turn (the order rotates from round to round) and takes
the CPU that the server's processes used (user + system, `/proc`); a round's ratio compares servers measured seconds
apart, and the median of the rounds' ratios is the figure. The servers are started afresh every few rounds,
alternating the order they start in: the ratio moves from one start of the servers to the next by more than the
few per cent it measures (from 1.01 to 1.10 between the 8 starts of one run; each process has its own hash seed and
memory layout), so it takes several starts, not several rounds of one (bench/README.md)."""

from __future__ import annotations

import asyncio
import http.client
import statistics
from typing import Any
from urllib.parse import urlsplit

from bench.procs import Proc

Server = tuple[str, Proc]


def _sequential(base_url: str, path: str, token: str, requests: int) -> None:
    """`requests` GETs on one keep-alive connection, one at a time; every answer must be 200."""
    where = urlsplit(base_url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(requests):
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} on {base_url} answered {response.status}")
    finally:
        connection.close()


async def cpu_in_turn(
    servers: dict[str, Server], path: str, token: str, *, requests: int, rounds: int
) -> dict[str, list[float]]:
    """Microseconds of server CPU per request of each server, one figure a round."""
    names = list(servers)
    for url, _ in servers.values():  # warm-up: first requests load code and fill caches
        await asyncio.to_thread(_sequential, url, path, token, min(requests, 300))
    per_request: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in (*names[shift:], *names[:shift]):
            url, proc = servers[name]
            before = proc.tree_cpu_seconds()
            await asyncio.to_thread(_sequential, url, path, token, requests)
            per_request[name].append((proc.tree_cpu_seconds() - before) / requests * 1e6)
    return per_request


def summary(per_request: dict[str, list[float]], requests: int) -> dict[str, Any]:
    """Every round's figures, their medians, and against each other server the median over the rounds of the first
    server's CPU per request divided by that server's."""
    first, *others = per_request
    return {
        "requests_per_run": requests,
        "rounds": len(per_request[first]),
        "cpu_us_per_request": per_request,
        "median_cpu_us_per_request": {name: round(statistics.median(v), 1) for name, v in per_request.items()},
        "median_ratio_of_first_to": {
            name: round(statistics.median(a / b for a, b in zip(per_request[first], per_request[name], strict=True)), 3)
            for name in others
        },
    }
