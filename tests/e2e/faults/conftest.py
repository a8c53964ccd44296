"""Fixtures of the fault suite: a deployment whose API and workers reach PostgreSQL through a TCP proxy that can be
cut and Redis as a private `redis-server` that can be stopped and flushed, with short lease and reconcile settings
so that recovery takes seconds. Every test gets its own database (a copy of a migrated template), proxy and Redis.

Timings of recovery are printed as `[fault-timing] ...` lines and summed up at the end of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from jose import jwt

from tests.e2e.conftest import BIN, Deployment, Process
from tests.e2e.faults.redis_server import PrivateRedis
from tests.e2e.faults.tcp_proxy import TcpProxy
from tests.loopback import free_port
from tests.services import DATABASE_URL, REQUIRE_SERVICES, require

ISSUER = "reportgen-faults"
AUDIENCE = "reportgen-clients"
QUEUE_NAME = "reportgen:faults"
JOB_SUCCEEDED = "job succeeded"
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
RANK = {"Queued": 0, "Running": 1, "Succeeded": 2, "Failed": 2, "Cancelled": 2}

FAST_SETTINGS = {
    "REPORTGEN_LEASE_SECONDS": "3",
    "REPORTGEN_RECONCILE_INTERVAL_SECONDS": "1",
    "REPORTGEN_SWEEP_INTERVAL_SECONDS": "1",
    "REPORTGEN_SHUTDOWN_GRACE_SECONDS": "5",
    "REPORTGEN_MAX_ATTEMPTS": "3",
    "REPORTGEN_MAX_ACTIVE_JOBS_PER_USER": "100000",
    "REPORTGEN_WORKER_CONCURRENCY": "4",
    "REPORTGEN_REPORT_TIMEOUT_SECONDS": "30",
    "REPORTGEN_POLL_AFTER_SECONDS": "1",
    "REPORTGEN_QUEUE_NAME": QUEUE_NAME,
    "REPORTGEN_WORKER_METRICS_PORT": "0",  # many workers on one host: no fixed port, and loopback traffic only
    "REPORTGEN_LOG_FORMAT": "json",
    # Reports run as the service's own (super)user here: these tests are about faults, and a role of their own would
    # be one more thing to create per database. test_production_mode runs reports as a role that may only read.
    "REPORTGEN_ALLOW_PRIVILEGED_REPORTS": "true",
}
"""Lease 3 s renewed every second, reconcile and sweep every second: a lost worker is noticed within about 4 s."""

# -- reports whose output is known in advance ------------------------------------------------------------------

CHECKABLE = {
    "name": "Checkable series",
    "description": "Rows that depend on the parameters only, so every artifact can be checked byte for byte",
    "query": (
        "SELECT n, n * :seed AS product, md5((n + :seed)::text) AS digest "
        "FROM generate_series(1, :rows) AS n ORDER BY n"
    ),
    "parameters": [
        {"name": "rows", "type": "integer", "required": False, "default": 10},
        {"name": "seed", "type": "integer", "required": False, "default": 0},
    ],
    "formats": ["csv", "json"],
    "deliveryTarget": "API_RESPONSE",
    "asyncEnabled": True,
}

SLOW_ROWS = 2500
"""About 2 ms a row: some 5 s in all. Rows come in batches of 1000, so the first progress is saved after about
2 s: a job seen Running with progress > 0 (`mid_way`) still has about 3 s to go."""
SLOW = {
    "name": "Slow series",
    "description": "About 2 ms a row, long enough to break something while it runs",
    "query": "SELECT n, pg_sleep(0.002)::text AS pause FROM generate_series(1, :rows) AS n",
    "parameters": [{"name": "rows", "type": "integer", "required": False, "default": SLOW_ROWS}],
    "formats": ["csv", "json"],
    "deliveryTarget": "API_RESPONSE",
    "asyncEnabled": True,
}


def expected_rows(rows: int, seed: int) -> list[dict[str, Any]]:
    return [
        {"n": n, "product": n * seed, "digest": hashlib.md5(str(n + seed).encode()).hexdigest()}  # noqa: S324
        for n in range(1, rows + 1)
    ]


def expected_csv(rows: int, seed: int) -> bytes:
    lines = ["n,product,digest", *(f"{r['n']},{r['product']},{r['digest']}" for r in expected_rows(rows, seed))]
    return "".join(f"{line}\r\n" for line in lines).encode()


def artifact_problem(fmt: str, rows: int, seed: int, response: httpx.Response) -> str | None:
    """None when `response` is the complete, exact artifact of CHECKABLE for (rows, seed); else what is wrong."""
    if response.status_code != 200:
        return f"result answered {response.status_code}: {response.text[:200]}"
    body = response.content
    if response.headers.get("content-length") != str(len(body)):
        return f"Content-Length {response.headers.get('content-length')} but {len(body)} bytes"
    etag = response.headers.get("etag", "").strip('"')
    if etag and etag != hashlib.sha256(body).hexdigest():
        return "ETag is not the SHA-256 of the body"
    if fmt == "csv":
        return None if body == expected_csv(rows, seed) else f"CSV differs: {body[:120]!r}...{body[-80:]!r}"
    try:
        decoded = json.loads(body)
    except ValueError:
        return f"JSON does not parse: {body[:120]!r}...{body[-80:]!r}"
    return None if decoded == expected_rows(rows, seed) else f"JSON rows differ: {str(decoded)[:200]}"


@dataclass(frozen=True, slots=True)
class Submitted:
    """A job of the CHECKABLE report as a client asked for it, so that its artifact can be checked."""

    job_id: str
    rows: int
    seed: int
    fmt: str


def generate_checkable(client: httpx.Client, report_id: str, rows: int, seed: int, fmt: str) -> Submitted:
    response = client.post(
        f"/api/v1/reports/{report_id}/generate", json={"parameters": {"rows": rows, "seed": seed}, "format": fmt}
    )
    assert response.status_code == 202, response.text
    return Submitted(response.json()["jobId"], rows, seed, fmt)


def artifact_problems(client: httpx.Client, jobs: list[Submitted]) -> dict[str, str]:
    """Job id -> what is wrong with its result, for every job whose result is not exactly the expected one."""
    problems = {}
    for job in jobs:
        problem = artifact_problem(job.fmt, job.rows, job.seed, client.get(f"/api/v1/jobs/{job.job_id}/result"))
        if problem is not None:
            problems[job.job_id] = problem
    return problems


def artifacts_of(deployment: FaultDeployment, job_id: str) -> list[str]:
    """Where the job's artifacts are kept: files under the artifact directory whose path names the job (artifacts and
    unfinished writes), and rows of the database's small artifacts whose key names it."""
    root = Path(deployment.env["REPORTGEN_ARTIFACT_DIR"])
    files = [str(path) for path in root.rglob("*") if path.is_file() and job_id in str(path)] if root.exists() else []
    rows = deployment.sql("SELECT key FROM inline_artifacts WHERE strpos(key, $1) > 0", job_id)
    return files + [f"inline_artifacts: {row['key']}" for row in rows]


# -- timings ---------------------------------------------------------------------------------------------------

TIMINGS: list[tuple[str, str, str]] = []


def record(scenario: str, what: str, value: float | str, unit: str = "s") -> None:
    """Print one measurement now (visible with -s) and keep it for the summary at the end of the session."""
    text = f"{value:.2f} {unit}" if isinstance(value, float) else f"{value} {unit}".strip()
    TIMINGS.append((scenario, what, text))
    print(f"[fault-timing] {scenario}: {what} = {text}")  # noqa: T201


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("fault injection: recovery times and counts")
    for scenario, what, text in TIMINGS:
        terminalreporter.write_line(f"{scenario:<40} {what:<58} {text}")


FAILED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "direct_database: the deployment reaches PostgreSQL without the proxy")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = bool(report.failed)
    return report


# -- watching a job --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """One poll of a job's status."""

    at: float
    status: str
    attempts: int
    progress: int
    error_code: str | None
    body: dict[str, Any]


def poll_status(client: httpx.Client, job_id: str) -> Seen | None:
    """The job's status, or None when the API did not answer 200 (restarting, dependency down)."""
    try:
        response = client.get(f"/api/v1/jobs/{job_id}")
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    error = body.get("error") or {}
    return Seen(time.monotonic(), body["status"], body["attempts"], body["progress"], error.get("code"), body)


def current_status(client: httpx.Client, job_id: str) -> str:
    """The job's status now, or "" when the API did not answer 200."""
    seen = poll_status(client, job_id)
    return "" if seen is None else seen.status


def watch(
    client: httpx.Client,
    job_id: str,
    until: Callable[[Seen], bool] | frozenset[str] | set[str],
    timeout: float,
    interval: float = 0.1,
) -> list[Seen]:
    """Poll until `until` holds (a predicate, or a set of statuses) or `timeout` passes; every answer is kept."""
    done = until if callable(until) else (lambda seen: seen.status in until)
    history: list[Seen] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = poll_status(client, job_id)
        if seen is not None:
            history.append(seen)
            if done(seen):
                break
        time.sleep(interval)
    return history


def mid_way(seen: Seen) -> bool:
    """Running, with some progress saved: the report is under way."""
    return seen.status == "Running" and seen.progress > 0


def watch_until_mid_way(client: httpx.Client, job_id: str, timeout: float = 20) -> list[Seen]:
    history = watch(client, job_id, mid_way, timeout=timeout)
    assert history, "the job's status never answered"
    assert mid_way(history[-1]), f"never seen running mid-way: {statuses(history)}"
    return history


def backwards(history: list[Seen], *, requeue_allowed: bool) -> list[str]:
    """The steps of `history` that go backwards: a terminal status that changes, Running -> Queued when no
    requeue is allowed, or progress that decreases."""
    problems = []
    for before, after in itertools.pairwise(history):
        if before.status in TERMINAL and after.status != before.status:
            problems.append(f"terminal {before.status} became {after.status}")
        elif RANK[after.status] < RANK[before.status] and not requeue_allowed:
            problems.append(f"{before.status} went back to {after.status}")
        if after.progress < before.progress:
            problems.append(f"progress went down from {before.progress} to {after.progress} ({after.status})")
        if after.attempts < before.attempts:
            problems.append(f"attempts went down from {before.attempts} to {after.attempts}")
    return problems


def statuses(history: list[Seen]) -> list[str]:
    """The distinct statuses of `history`, in order, repeats collapsed."""
    return [status for status, _ in itertools.groupby(seen.status for seen in history)]


def wait_all(client: httpx.Client, job_ids: list[str], timeout: float, interval: float = 0.2) -> dict[str, Seen]:
    """Poll every job until all are terminal or `timeout` passes; returns the last status seen of each."""
    last: dict[str, Seen] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_id in job_ids:
            if job_id in last and last[job_id].status in TERMINAL:
                continue
            seen = poll_status(client, job_id)
            if seen is not None:
                last[job_id] = seen
        if len(last) == len(job_ids) and all(seen.status in TERMINAL for seen in last.values()):
            break
        time.sleep(interval)
    return last


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def is_problem(response: httpx.Response, status: int) -> bool:
    return response.status_code == status and response.headers.get("content-type", "").startswith(
        "application/problem+json"
    )


# -- the deployment --------------------------------------------------------------------------------------------


def _routine_access(line: str) -> bool:
    try:
        fields = json.loads(line)
    except ValueError:
        return False
    return isinstance(fields, dict) and fields.get("event") == "http_request" and fields.get("status", 500) < 500


def _database_url(name: str, *, port: int | None = None) -> str:
    parts = urlsplit(DATABASE_URL)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    netloc = parts.netloc if port is None else f"{userinfo}127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(DATABASE_URL))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class FaultDeployment(Deployment):
    """A deployment under test plus the levers to break it: `proxy` (the database link), `redis` (the queue)."""

    def __init__(
        self,
        *,
        base_url: str,
        env: dict[str, str],
        tmp: Path,
        proxy: TcpProxy,
        redis: PrivateRedis,
        direct_database_url: str,
        jwt_secret: str,
    ) -> None:
        super().__init__(base_url, env, tmp)
        self.port = int(urlsplit(base_url).port or 0)
        self.proxy = proxy
        self.redis = redis
        self.direct_database_url = direct_database_url
        self.jwt_secret = jwt_secret
        self.retired: list[Process] = []
        self._serial = itertools.count(1)

    # processes

    def spawn(self, name: str, *args: str, **env: str) -> Process:
        """Start `reportgen <args>` in a session of its own (so its children can be cleaned up with it)."""
        return self.spawn_in(self.tmp, name, *args, **env)

    def spawn_in(self, cwd: Path, name: str, *args: str, **env: str) -> Process:
        """`spawn` in the working directory `cwd` (a host of its own)."""
        log = self.tmp / f"{name}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen(
                [str(BIN / "reportgen"), *args],
                env=self.env | env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_api(self, api_workers: int = 1, **env: str) -> Process:
        args = ("serve", "--port", str(self.port), "--workers", str(api_workers))
        return self.spawn(f"api-{next(self._serial)}", *args, **env)

    def start_worker(self, **env: str) -> Process:
        return self.spawn(f"worker-{next(self._serial)}", "worker", **env)

    def wait_started(self, process: Process, timeout: float = 20) -> None:
        """Until the process has configured its logging (its first JSON line): a worker is then polling."""
        started = wait_until(lambda: any(line.startswith("{") for line in process.output().splitlines()), timeout)
        assert started, f"{process.name} did not start within {timeout} s:\n{process.output()[-2000:]}"

    def up(self, workers: int = 1, api_workers: int = 1, **env: str) -> None:
        self.start_api(api_workers, **env)
        for _ in range(workers):
            self.start_worker(**env)
        self.wait_ready()

    @property
    def api(self) -> Process:
        return next(p for p in self.processes if p.name.startswith("api-"))

    @property
    def workers(self) -> list[Process]:
        return [p for p in self.processes if p.name.startswith("worker-")]

    def all_processes(self) -> list[Process]:
        return [*self.retired, *self.processes]

    def _retire(self, process: Process) -> None:
        if process in self.processes:
            self.processes.remove(process)
            self.retired.append(process)

    def kill(self, process: Process) -> float:
        """SIGKILL, as a crash; returns the moment of the kill (time.monotonic)."""
        at = time.monotonic()
        process.popen.kill()
        process.popen.wait(10)
        self._retire(process)
        return at

    def terminate(self, process: Process, timeout: float = 30) -> int:
        """SIGTERM and wait up to `timeout` for the exit; returns the exit code (SIGKILL after the timeout)."""
        code = process.stop(signal.SIGTERM, timeout)
        self._retire(process)
        return code

    def wait_exit(self, process: Process, timeout: float) -> int | None:
        """Wait for a process that was already signalled to exit, without signalling it again; None (and a
        SIGKILL) when it did not exit within `timeout`."""
        try:
            code: int | None = process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait(10)
            code = None
        self._retire(process)
        return code

    def cleanup(self) -> None:
        for process in reversed(self.processes):
            process.stop(signal.SIGTERM, 15)
        for process in self.all_processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.popen.pid, signal.SIGKILL)  # leftovers of that process's own session
        self.retired.extend(self.processes)
        self.processes.clear()

    def dump_logs(self, tail: int = 40) -> None:
        """Print the end of every log, without the access lines of successful requests."""
        for process in self.all_processes():
            lines = [line for line in process.output().splitlines() if not _routine_access(line)][-tail:]
            print(f"----- {process.name} (exit {process.popen.poll()}), last {len(lines)} lines")  # noqa: T201
            print("\n".join(lines))  # noqa: T201
        print(f"----- redis log\n{self.redis.log.read_text(errors='replace')[-2000:]}")  # noqa: T201

    # logs

    @staticmethod
    def events(process: Process) -> list[dict[str, Any]]:
        """The JSON log lines of a process (a line cut short by SIGKILL, or plain text, is skipped)."""
        events = []
        for line in process.output().splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def worker_events(self) -> list[dict[str, Any]]:
        return [
            event | {"_process": process.name}
            for process in self.all_processes()
            if process.name.startswith("worker-")
            for event in self.events(process)
        ]

    def server_errors(self) -> list[dict[str, Any]]:
        """Requests the API processes logged as answered 5xx other than 503 (a dependency down): never expected."""
        return [
            event
            for process in self.all_processes()
            if process.name.startswith("api-")
            for event in self.events(process)
            if event.get("event") == "http_request" and int(event.get("status", 0)) >= 500 and event["status"] != 503
        ]

    def successes(self) -> Counter[str]:
        """How often each job id was logged `job succeeded`, over every worker that ever ran."""
        return Counter(str(e.get("job_id")) for e in self.worker_events() if e.get("event") == JOB_SUCCEEDED)

    def log_lines(self, job_id: str) -> list[str]:
        return [
            f"{process.name}: {line}"
            for process in self.all_processes()
            for line in process.output().splitlines()
            if job_id in line
        ]

    # clients and data

    def token(self, sub: str, *roles: str) -> str:
        now = int(time.time())
        claims = {"sub": sub, "roles": list(roles), "iat": now, "exp": now + 3600, "iss": ISSUER, "aud": AUDIENCE}
        token: str = jwt.encode(claims, self.jwt_secret, algorithm="HS256")
        return token

    def create_report(self, definition: dict[str, Any]) -> str:
        with self.client(self.token("admin-1", "admin")) as admin:
            response = admin.post("/api/v1/reports", json=definition)
        assert response.status_code == 201, response.text
        report_id: str = response.json()["id"]
        return report_id

    def sql(self, query: str, *args: object) -> list[dict[str, Any]]:
        """Run a query on the deployment's database directly (not through the proxy)."""

        async def run() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(_asyncpg_dsn(self.direct_database_url))
            try:
                return [dict(row) for row in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def hold_queue(self) -> None:
        """Move arq's queue aside (RENAME, atomic): deliveries wait there, invisible to the workers."""
        with self.redis.client() as client:
            client.rename(QUEUE_NAME, f"{QUEUE_NAME}:held")

    def release_queue(self) -> None:
        """Put the held deliveries back at once: every polling worker sees all of them at the same moment."""
        with self.redis.client() as client:
            client.rename(f"{QUEUE_NAME}:held", QUEUE_NAME)

    def enqueue_duplicates(self, deliveries: list[tuple[str, str]]) -> None:
        """Deliver jobs once more, straight into arq's queue, as (job id, arq job id) pairs: what a reconciler
        racing a worker, or a Redis failover replaying a write, may do."""
        from arq.connections import RedisSettings, create_pool

        async def run() -> None:
            pool = await create_pool(RedisSettings(host="127.0.0.1", port=self.redis.port))
            try:
                for job_id, arq_job_id in deliveries:
                    await pool.enqueue_job("run_report_job", job_id, _job_id=arq_job_id, _queue_name=QUEUE_NAME)
            finally:
                await pool.aclose()

        asyncio.run(run())


@pytest.fixture(scope="session")
def faults_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database that every test's database is copied from (CREATE DATABASE ... TEMPLATE)."""
    require("PostgreSQL", DATABASE_URL)
    name = f"reportgen_e2e_faults_tpl_{secrets.token_hex(4)}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    tmp = tmp_path_factory.mktemp("faults-template")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTGEN_")}
        env |= {"REPORTGEN_DATABASE_URL": _database_url(name), "REPORTGEN_VAR_DIR": str(tmp / "var")}
        migrated = subprocess.run(
            [str(BIN / "reportgen"), "migrate"], env=env, cwd=tmp, capture_output=True, text=True, timeout=120
        )
        assert migrated.returncode == 0, migrated.stderr
        yield name
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def faults(request: pytest.FixtureRequest, tmp_path: Path, faults_template: str) -> Iterator[FaultDeployment]:
    """A deployment, not started yet: its own database, a proxy in front of PostgreSQL and a private Redis.

    Tests change `deployment.env` before starting processes, then call `up()` (or start_api/start_worker).
    A test marked `@pytest.mark.direct_database` reaches PostgreSQL without the proxy (the soak, where the
    proxy's thread would compete with the test's own client for the GIL).
    """
    if shutil.which("redis-server") is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed and REPORTGEN_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip("redis-server is not installed (the fault suite runs a private one)")
    name = f"reportgen_e2e_faults_{secrets.token_hex(4)}"
    asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {faults_template}"))
    pg = urlsplit(DATABASE_URL)
    proxy = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432).start()
    private_redis = PrivateRedis(tmp_path / "redis").start()
    direct = _database_url(name)
    through_proxy = request.node.get_closest_marker("direct_database") is None
    secret = secrets.token_urlsafe(40)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTGEN_")} | FAST_SETTINGS
    env |= {
        "REPORTGEN_DATABASE_URL": _database_url(name, port=proxy.port) if through_proxy else direct,
        "REPORTGEN_REDIS_URL": private_redis.url(),
        "REPORTGEN_JWT_SECRET": secret,
        "REPORTGEN_JWT_ISSUER": ISSUER,
        "REPORTGEN_JWT_AUDIENCE": AUDIENCE,
        "REPORTGEN_VAR_DIR": str(tmp_path / "var"),
        "REPORTGEN_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }
    deployment = FaultDeployment(
        base_url=f"http://127.0.0.1:{free_port()}",
        env=env,
        tmp=tmp_path,
        proxy=proxy,
        redis=private_redis,
        direct_database_url=direct,
        jwt_secret=secret,
    )
    try:
        yield deployment
    finally:
        failed = request.node.stash.get(FAILED, True)
        try:
            deployment.cleanup()
            if failed:
                deployment.dump_logs()
                print(f"----- logs and artifacts kept in {tmp_path}")  # noqa: T201
        finally:
            proxy.close()
            private_redis.stop()
            asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            if not failed:
                shutil.rmtree(tmp_path, ignore_errors=True)
