"""The production mode on loopback: its own database and Redis db, `reportgen serve`, `reportgen worker`, the floor
app and the bare arq worker, all as child processes of this run."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis.asyncio as aioredis

from bench.procs import BIN, Proc, free_port, start

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_NAME = "reportgen_bench"
PG_URL = f"{PG_SERVER}/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/15"
QUEUE_NAME = "reportgen:queue"
NOOP_QUEUE = "bench:noop"
ISSUER, AUDIENCE = "reportgen-bench", "reportgen-bench-clients"
HEALTH_SUFFIX = ":health-check"  # arq writes <queue><suffix> on a worker's first poll


class Stack:
    def __init__(self, run_dir: Path, api_workers: int, overrides: dict[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.logs = run_dir / "logs"
        self.api_workers = api_workers
        self.secret = secrets.token_urlsafe(48)
        self.api_url = f"http://127.0.0.1:{free_port()}"
        self.quiet_api_url = f"http://127.0.0.1:{free_port()}"
        """A second `reportgen serve` at log level WARNING, beside the default one (INFO)."""
        self.floor_url = f"http://127.0.0.1:{free_port()}"
        self.procs: dict[str, Proc] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTGEN_")} | {
            "REPORTGEN_DATABASE_URL": PG_URL.replace("postgresql://", "postgresql+asyncpg://"),
            "REPORTGEN_REDIS_URL": REDIS_URL,
            "REPORTGEN_QUEUE_NAME": QUEUE_NAME,
            "REPORTGEN_JWT_SECRET": self.secret,
            "REPORTGEN_JWT_ISSUER": ISSUER,
            "REPORTGEN_JWT_AUDIENCE": AUDIENCE,
            "REPORTGEN_MAX_ACTIVE_JOBS_PER_USER": "1000000",
            "REPORTGEN_LOG_LEVEL": "INFO",  # the default: one access line per request
            "REPORTGEN_LOG_FORMAT": "json",
            "REPORTGEN_DEMO": "false",
            # The bench's reports read its own tables as the service's role; the privilege check is not measured.
            "REPORTGEN_ALLOW_PRIVILEGED_REPORTS": "true",
            "REPORTGEN_ARTIFACT_DIR": str(run_dir / "artifacts"),
            "REPORTGEN_VAR_DIR": str(run_dir / "var"),
            "REPORTGEN_WORKER_METRICS_PORT": "0",  # off: it would listen on all interfaces, on a fixed port
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.env |= overrides or {}
        self.redis = aioredis.Redis.from_url(REDIS_URL)

    def reportgen(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603
            [str(BIN / "reportgen"), *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"reportgen {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    async def prepare(self) -> None:
        """Recreate the database, migrate it, empty our Redis db (15; never another one)."""
        conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {DB_NAME}")
        finally:
            await conn.close()
        await self.redis.flushdb()
        await asyncio.to_thread(self.reportgen, "migrate")

    def _start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> Proc:
        proc = start(name, list(argv), self.env | (env or {}), self.logs, self.run_dir)
        self.procs[name] = proc
        return proc

    async def start_api(self, *, quiet: bool = False) -> Proc:
        """`reportgen serve` at the default log level (INFO), or with `quiet` a second one at WARNING."""
        name, url = ("api-warning", self.quiet_api_url) if quiet else ("api", self.api_url)
        argv = (str(BIN / "reportgen"), "serve", "--port", url.rsplit(":", 1)[1], "--workers", str(self.api_workers))
        proc = self._start(name, *argv, env={"REPORTGEN_LOG_LEVEL": "WARNING"} if quiet else None)
        await wait_http(f"{url}/health/ready", proc)
        return proc

    async def start_floor(self) -> Proc:
        port = self.floor_url.rsplit(":", 1)[1]
        args = ("-m", "bench.floor_app", "--port", port, "--workers", str(self.api_workers))
        proc = self._start("floor", str(BIN / "python"), *args)
        await wait_http(f"{self.floor_url}/ready", proc)
        return proc

    async def start_worker(self, bare: bool = False, name: str = "worker") -> Proc:
        """`reportgen worker` (named `name`), or the bare arq no-op worker; returns once it polls its queue."""
        queue = NOOP_QUEUE if bare else QUEUE_NAME
        await self.redis.delete(queue + HEALTH_SUFFIX)
        if bare:
            proc = self._start("noop-worker", str(BIN / "python"), "-m", "bench.noop_worker")
        else:
            proc = self._start(name, str(BIN / "reportgen"), "worker")
        deadline = time.monotonic() + 60
        while not await self.redis.exists(queue + HEALTH_SUFFIX):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not start polling:\n{proc.tail()}")
            await asyncio.sleep(0.05)
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    async def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        await self.redis.aclose()


async def wait_http(url: str, proc: Proc, limit_seconds: float = 60) -> None:
    deadline = time.monotonic() + limit_seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready after {limit_seconds} s:\n{proc.tail()}")
