"""What the load needs in the service: tokens, the reports (created through the API), finished jobs to poll."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from api.auth import JwtSettings, issue_token
from bench.stack import AUDIENCE, ISSUER, Stack

LOAD_USERS = 64
LOAD_OWNER_PREFIX = "bench-load-"
SMALL_ROWS = 10
SMALL_REPORT = {
    "name": "bench-small",
    "description": "make bench: a small report (generate load, job pipeline)",
    "query": "SELECT g AS n, g * 2 AS twice FROM generate_series(1, :rows) AS g",
    "parameters": [{"name": "rows", "type": "integer", "default": SMALL_ROWS}],
    "formats": ["csv", "json"],
}
BIG_QUERY = (
    "SELECT g AS id, g % 1000 AS bucket, round((g * 0.37)::numeric, 2) AS amount, md5(g::text) AS label, "
    "DATE '2024-01-01' + (g % 366)::int AS day, (g % 3 = 0) AS flag FROM generate_series(1, :rows) AS g"
)
BIG_REPORT = {
    "name": "bench-big",
    "description": "make bench: 6 computed columns over generate_series",
    "query": BIG_QUERY,
    "parameters": [{"name": "rows", "type": "integer", "default": 1000}],
    "formats": ["csv", "json", "ndjson", "xlsx", "parquet", "pdf"],
    "chart": {"type": "line", "x": "id", "y": ["amount", "bucket"]},
}
TERMINAL = ("Succeeded", "Failed", "Cancelled")


@dataclass
class Fixtures:
    admin_token: str
    small_report: str
    big_report: str
    users: list[tuple[str, str]]
    """(user id, token) of the load's users."""
    status_jobs: list[tuple[str, str]] = field(default_factory=list)
    """(job id, token of its owner): the fixed set that the status load polls."""


async def create_fixtures(stack: Stack) -> Fixtures:
    admin = (await asyncio.to_thread(stack.reportgen, "token", "--sub", "bench-admin", "--role", "admin")).strip()
    async with httpx.AsyncClient(base_url=stack.api_url, headers=bearer(admin), timeout=30) as client:
        ids = []
        for definition in (SMALL_REPORT, BIG_REPORT):
            response = await client.post("/api/v1/reports", json=definition)
            response.raise_for_status()
            ids.append(response.json()["id"])
    names = [f"{LOAD_OWNER_PREFIX}{i:02d}" for i in range(LOAD_USERS)]
    users = [(name, user_token(stack, name)) for name in names]
    return Fixtures(admin, ids[0], ids[1], users)


async def lift_limit(stack: Stack, fixtures: Fixtures, user: str) -> None:
    """Give `user` no limit of active jobs, as an admin sets up a service account that keeps many jobs in flight."""
    async with httpx.AsyncClient(base_url=stack.api_url, headers=bearer(fixtures.admin_token), timeout=30) as client:
        response = await client.put(f"/api/v1/users/{user}/job-limit", json={"maxActiveJobs": 0})
        response.raise_for_status()


def user_token(stack: Stack, user: str) -> str:
    """A token of a user without roles, minted with the service's `issue_token` (as `reportgen token` does)."""
    jwt = JwtSettings(secret=stack.secret, issuer=ISSUER, audience=AUDIENCE)
    return issue_token(jwt, user, [], ttl_seconds=4 * 3600)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def generate_body(rows: int = SMALL_ROWS, fmt: str = "csv") -> dict[str, Any]:
    return {"parameters": {"rows": rows}, "format": fmt}


async def create_status_jobs(stack: Stack, fixtures: Fixtures, db: asyncpg.Connection) -> None:
    """One finished job per load user, made through the API and run by the worker (which must be running)."""
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        for _user, token in fixtures.users:
            path = f"/api/v1/reports/{fixtures.small_report}/generate"
            response = await client.post(path, json=generate_body(), headers=bearer(token))
            response.raise_for_status()
            fixtures.status_jobs.append((response.json()["jobId"], token))
    await wait_terminal(db, [job for job, _ in fixtures.status_jobs], limit_seconds=120)


async def wait_terminal(db: asyncpg.Connection, job_ids: list[str], limit_seconds: float) -> list[asyncpg.Record]:
    """Poll the jobs table until every job is terminal; their rows (id, status, times, artifact size)."""
    deadline = time.monotonic() + limit_seconds
    while True:
        rows = await db.fetch(
            "SELECT id, status, error_code, artifact_size, extract(epoch FROM created_at) AS created,"
            " extract(epoch FROM started_at) AS started, extract(epoch FROM finished_at) AS finished"
            " FROM jobs WHERE id = ANY($1::uuid[])",
            job_ids,
        )
        if len(rows) == len(job_ids) and all(row["status"] in TERMINAL for row in rows):
            return list(rows)
        if time.monotonic() > deadline:
            states = sorted({row["status"] for row in rows})
            raise TimeoutError(f"{len(job_ids)} jobs not all finished after {limit_seconds} s (statuses: {states})")
        await asyncio.sleep(0.1)
