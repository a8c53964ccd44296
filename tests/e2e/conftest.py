"""Real `reportgen` processes on loopback: production mode (PostgreSQL + Redis, serve + worker) and embedded."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
import redis

from infrastructure.logs import FLUSH_AFTER_SECONDS
from tests.loopback import free_port
from tests.s3_server import S3Server, s3_server
from tests.services import DATABASE_URL, REDIS_URL, require

E2E_REDIS_DB = 13
BIN = Path(sys.executable).parent


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """What the process wrote so far; from a running one, also what it logged until now (a line below WARNING
        waits up to FLUSH_AFTER_SECONDS in its log handler before it is written)."""
        if self.popen.poll() is None:
            time.sleep(2 * FLUSH_AFTER_SECONDS)
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@dataclass
class Deployment:
    """Processes started for a test, their environment, and an HTTP client for the API."""

    base_url: str
    env: dict[str, str]
    tmp: Path
    processes: list[Process] = field(default_factory=list)
    tokens: dict[tuple[str, ...], str] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> Process:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
            popen = subprocess.Popen(
                [str(BIN / "reportgen"), *args], env=self.env, stdout=handle, stderr=subprocess.STDOUT, cwd=self.tmp
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "reportgen"), *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def token(self, sub: str, *roles: str) -> str:
        """A token from `reportgen token` (a process start of a second or more), minted once per user and roles."""
        key = (sub, *sorted(roles))
        if key not in self.tokens:
            result = self.run("token", "--sub", sub, *(arg for role in roles for arg in ("--role", role)))
            assert result.returncode == 0, result.stderr
            self.tokens[key] = result.stdout.strip().splitlines()[-1]
        return self.tokens[key]

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                assert process.popen.poll() is None, f"{process.name} exited:\n{process.output()}"
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.output()}" for p in self.processes)
        raise AssertionError(f"not ready after {timeout} s\n{logs}")

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def wait_for_status(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if body["status"] in statuses or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


async def _admin(sql: str, database_url: str = DATABASE_URL) -> None:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def e2e_database_url() -> Iterator[str]:
    require("PostgreSQL", DATABASE_URL)
    name = f"reportgen_e2e_{secrets.token_hex(4)}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    parts = urlsplit(DATABASE_URL)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def e2e_reporting_url(e2e_database_url: str) -> Iterator[str]:
    """The URL that reports run with in production mode: a role that may only read, made by `reportgen migrate
    --reporting-role` (which migrates the database first), as the README's production setup does."""
    role = f"reportgen_e2e_reports_{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTGEN_")}
    env["REPORTGEN_DATABASE_URL"] = e2e_database_url
    done = subprocess.run(
        [str(BIN / "reportgen"), "migrate", "--reporting-role", role],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    parts = urlsplit(e2e_database_url)
    yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    asyncio.run(_admin(f"DROP OWNED BY {role}", database_url=e2e_database_url))
    asyncio.run(_admin(f"DROP ROLE {role}"))


@contextmanager
def flushed_redis() -> Iterator[str]:
    """The URL of the e2e tests' Redis database, empty at the start and emptied at the end."""
    require("Redis", REDIS_URL)
    url = f"{REDIS_URL.rstrip('/')}/{E2E_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def e2e_redis_url() -> Iterator[str]:
    with flushed_redis() as url:
        yield url


def _base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTGEN_")}
    env.update(
        {
            "REPORTGEN_VAR_DIR": str(tmp / "var"),
            "REPORTGEN_ARTIFACT_DIR": str(tmp / "artifacts"),
            "REPORTGEN_LOG_FORMAT": "json",
        }
    )
    return env


@contextmanager
def deployed(tmp: Path, env: dict[str, str], *serve_args: str) -> Iterator[Deployment]:
    """`reportgen migrate`, then `reportgen serve` (with `serve_args`) and `reportgen worker`, ready; stopped after."""
    port = free_port()
    deployment = Deployment(f"http://127.0.0.1:{port}", env, tmp)
    migrated = deployment.run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    deployment.start("api", "serve", "--port", str(port), *serve_args)
    deployment.start("worker", "worker")
    try:
        deployment.wait_ready()
        yield deployment
    finally:
        deployment.stop_all()


@pytest.fixture
def production(
    tmp_path: Path, e2e_database_url: str, e2e_reporting_url: str, e2e_redis_url: str
) -> Iterator[Deployment]:
    """`reportgen migrate`, then `reportgen serve` and `reportgen worker` against PostgreSQL and Redis, reports
    running as a role that may only read."""
    with deployed(tmp_path, production_env(tmp_path, e2e_database_url, e2e_reporting_url, e2e_redis_url)) as deployment:
        yield deployment


def production_env(tmp_path: Path, e2e_database_url: str, e2e_reporting_url: str, e2e_redis_url: str) -> dict[str, str]:
    """The environment of the `production` deployment."""
    return _base_env(tmp_path) | {
        "REPORTGEN_DATABASE_URL": e2e_database_url,
        "REPORTGEN_REPORTING_DATABASE_URL": e2e_reporting_url,
        "REPORTGEN_REDIS_URL": e2e_redis_url,
        "REPORTGEN_JWT_SECRET": secrets.token_urlsafe(40),
        "REPORTGEN_JWT_ISSUER": "reportgen-e2e",
        "REPORTGEN_JWT_AUDIENCE": "reportgen-clients",
        "REPORTGEN_REPORT_TIMEOUT_SECONDS": "5",
        "REPORTGEN_POLL_AFTER_SECONDS": "1",
    }


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Deployment, Process]]:
    """`reportgen serve` alone, as `make run` starts it: SQLite under var/, in-process worker, demo reports."""
    port = free_port()
    deployment = Deployment(f"http://127.0.0.1:{port}", _base_env(tmp_path), tmp_path)
    process = deployment.start("embedded", "serve", "--port", str(port))
    try:
        deployment.wait_ready(timeout=60)
        yield deployment, process
    finally:
        deployment.stop_all()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (moto) on loopback, shared by the session's tests (each takes a bucket)."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server
