"""The container image of the Dockerfile, built from this tree and run as the README's "Container image" says: podman
builds it, then `migrate`, `serve` and `worker` containers run on the host's network against the local PostgreSQL
(a database of this test's own) and Redis (the e2e db number), as the image's non-root user; and the image without
arguments, on a published port.

Opt-in: REPORTGEN_CONTAINER_TEST=1, or `make test-container`. On our 2-core machines the first run takes about 90 s
(the base image 45 s, the build 40 s), a run after a change in src/ about 20 s: more than `make test` can spare (it is
close to its 10 minutes), and podman is not among the services CI provides. No registry can be reached here, so
unless the official base (python:3.11-slim-bookworm) is already in podman's storage, or REPORTGEN_CONTAINER_BASE names
another, tools/container-base.sh builds an equivalent from Debian packages. Where podman is missing or cannot run a
container, the test skips with podman's own error, even with REPORTGEN_REQUIRE_SERVICES=1."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from tests.e2e.conftest import _admin, flushed_redis, wait_for_status
from tests.loopback import free_port
from tests.services import DATABASE_URL, require

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[2]
OFFICIAL_BASE = "python:3.11-slim-bookworm"  # the Dockerfile's default BASE
LOCAL_BASE = "localhost/reportgen-base:3.11-bookworm"  # what tools/container-base.sh builds
IMAGE = "localhost/reportgen:container-test"
UID = "10001"  # the Dockerfile's ARG UID
ARTIFACTS = "/var/lib/reportgen/artifacts"

REPORT = {
    "name": "Container series",
    "description": "n and its square",
    "query": "SELECT n, n * n AS square FROM generate_series(1, :upto) AS n ORDER BY n",
    "parameters": [{"name": "upto", "type": "integer", "required": False, "default": 3}],
    "formats": ["csv", "parquet"],
    "deliveryTarget": "API_RESPONSE",
    "asyncEnabled": True,
}


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)


def checked(*args: str, timeout: float = 120) -> str:
    done = podman(*args, timeout=timeout)
    assert done.returncode == 0, f"podman {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def base_image() -> str:
    """The base to build on: REPORTGEN_CONTAINER_BASE, the official one if podman holds it, else the local
    equivalent (built once with tools/container-base.sh; kept in podman's storage for the next run)."""
    chosen = os.environ.get("REPORTGEN_CONTAINER_BASE")
    if chosen:
        return chosen
    for image in (OFFICIAL_BASE, LOCAL_BASE):
        if podman("image", "exists", image).returncode == 0:
            return image
    if shutil.which("debootstrap") is None:
        pytest.skip(f"no base image: {OFFICIAL_BASE} cannot be pulled here and debootstrap (to build one) is missing")
    built = subprocess.run(
        [str(ROOT / "tools" / "container-base.sh"), LOCAL_BASE], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, f"tools/container-base.sh: exit {built.returncode}\n{built.stderr}"
    return LOCAL_BASE


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built from this tree; skips, with podman's error, where podman cannot run a container."""
    if os.environ.get("REPORTGEN_CONTAINER_TEST") != "1":
        pytest.skip("REPORTGEN_CONTAINER_TEST=1 (make test-container) builds and runs the image: 20 s to 2 min")
    if shutil.which("podman") is None:
        pytest.skip("no container engine: podman is not installed (Debian: apt-get install podman)")
    info = podman("info")
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: podman info: {info.stderr.strip()}")
    base = base_image()
    probe = podman("run", "--rm", "--network=host", base, "python3", "-c", "print('ok')")
    if probe.returncode != 0 or probe.stdout.strip() != "ok":
        pytest.skip(f"podman cannot run a container here: {probe.stderr.strip()}")
    build(base)
    return IMAGE


def build(base: str) -> None:
    """Build the image (and tag its build stage, the cache of the next build); then remove the previous versions of
    both, so that repeated runs do not pile up untagged images of half a gigabyte."""
    options = [
        "--format",
        "docker",
        "--network=host",
        *([] if base == OFFICIAL_BASE else ["--build-arg", f"BASE={base}"]),
    ]
    tags = {f"{IMAGE}-build": ["--target", "build"], IMAGE: []}
    before = {tag: image_id(tag) for tag in tags}
    for tag, target in tags.items():
        checked("build", *options, *target, "-t", tag, str(ROOT), timeout=900)
    for tag, old in before.items():
        if old is not None and old != image_id(tag):
            podman("rmi", old)  # the previous version; a container of it may still hold it (then it stays)


def image_id(tag: str) -> str | None:
    found = podman("image", "inspect", "--format", "{{.Id}}", tag)
    return found.stdout.strip() if found.returncode == 0 else None


@dataclass
class Containers:
    """The containers of one deployment of the image, all on the host's network, with one environment."""

    image: str
    env: dict[str, str]
    artifacts: Path
    names: list[str] = field(default_factory=list)

    def _options(self) -> list[str]:
        mount = f"{self.artifacts}:{ARTIFACTS}"
        return ["--network=host", "-v", mount, *(f"--env={key}={value}" for key, value in self.env.items())]

    def run(self, *args: str) -> str:
        """A one-off command of the image (`migrate`, `token`), its stdout."""
        return checked("run", "--rm", *self._options(), self.image, *args)

    def start(self, role: str, *args: str) -> str:
        name = f"reportgen-test-{role}-{secrets.token_hex(4)}"
        checked("run", "--detach", "--name", name, *self._options(), self.image, *args)
        self.names.append(name)
        return name

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{podman('logs', name).stdout}{podman('logs', name).stderr}" for name in self.names
        )

    def stop(self, name: str) -> int:
        """`podman stop` (SIGTERM, the image's STOPSIGNAL; SIGKILL after 40 s), then the exit status."""
        checked("stop", "--time", "40", name, timeout=60)
        return int(checked("inspect", "--format", "{{.State.ExitCode}}", name).strip())

    def remove_all(self) -> None:
        for name in reversed(self.names):
            podman("rm", "--force", "--time", "5", name, timeout=60)


@dataclass(frozen=True)
class Database:
    url: str
    reporting_role: str  # made by the image's `migrate --reporting-role`

    @property
    def reporting_url(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(netloc=f"{self.reporting_role}@{parts.hostname}:{parts.port or 5432}"))


@pytest.fixture
def database() -> Iterator[Database]:
    """A database of this test's own, and the name of its reporting role; both dropped after (the database first:
    the role's privileges go with it)."""
    require("PostgreSQL", DATABASE_URL)
    name = f"reportgen_e2e_container_{secrets.token_hex(4)}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    database = Database(urlunsplit(urlsplit(DATABASE_URL)._replace(path=f"/{name}")), f"{name}_reports")
    try:
        yield database
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        asyncio.run(_admin(f"DROP ROLE IF EXISTS {database.reporting_role}"))


@pytest.fixture
def containers(image: str, database: Database, tmp_path: Path) -> Iterator[Containers]:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(mode=0o750)
    os.chown(artifacts, int(UID), int(UID))  # as the README tells operators: the volume belongs to the image's uid
    with flushed_redis() as redis_url:
        deployment = Containers(
            image,
            {
                "REPORTGEN_DATABASE_URL": database.url,
                "REPORTGEN_REPORTING_DATABASE_URL": database.reporting_url,
                "REPORTGEN_REDIS_URL": redis_url,
                "REPORTGEN_JWT_SECRET": secrets.token_urlsafe(40),
                "REPORTGEN_WORKER_METRICS_PORT": str(free_port()),
                "REPORTGEN_POLL_AFTER_SECONDS": "1",
            },
            artifacts,
        )
        try:
            yield deployment
        finally:
            deployment.remove_all()


def wait_ready(containers: Containers, base_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout} s\n{containers.logs()}")


def test_image_migrates_serves_and_runs_a_report_as_a_non_root_user(containers: Containers, database: Database) -> None:
    containers.run("migrate", "--reporting-role", database.reporting_role)
    port = free_port()
    api = containers.start("api", "serve", "--host", "127.0.0.1", "--port", str(port))
    worker = containers.start("worker", "worker")
    base_url = f"http://127.0.0.1:{port}"
    wait_ready(containers, base_url)

    assert checked("exec", api, "id", "-u").strip() == UID
    assert checked("exec", worker, "id", "-u").strip() == UID
    # The image's HEALTHCHECK, run by the engine: the API's readiness, the worker's metrics endpoint.
    assert podman("healthcheck", "run", api).returncode == 0, containers.logs()
    assert podman("healthcheck", "run", worker).returncode == 0, containers.logs()

    admin = containers.run("token", "--sub", "admin-1", "--role", "admin").strip()
    alice = containers.run("token", "--sub", "alice").strip()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {admin}"}, timeout=10) as client:
        created = client.post("/api/v1/reports", json=REPORT)
        assert created.status_code == 201, created.text
        report_id = created.json()["id"]
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {alice}"}, timeout=10) as client:
        as_csv = generate_and_download(client, containers, report_id, "csv")
        as_parquet = generate_and_download(client, containers, report_id, "parquet")

    assert list(csv.reader(io.StringIO(as_csv.decode()))) == [["n", "square"], ["1", "1"], ["2", "4"], ["3", "9"]]
    assert pq.read_table(io.BytesIO(as_parquet)).to_pydict() == {"n": [1, 2, 3], "square": [1, 4, 9]}
    written = [path for path in containers.artifacts.rglob("*") if path.is_file()]
    assert written, "the worker wrote no artifact into the mounted directory"
    assert {path.stat().st_uid for path in written} == {int(UID)}

    # SIGTERM ends both gracefully (exit status 0), well inside the stop timeout: not killed.
    assert (containers.stop(worker), containers.stop(api)) == (0, 0), containers.logs()


def generate_and_download(client: httpx.Client, containers: Containers, report_id: str, fmt: str) -> bytes:
    accepted = client.post(f"/api/v1/reports/{report_id}/generate", json={"format": fmt})
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    status = wait_for_status(client, job["jobId"], {"Succeeded", "Failed", "Cancelled"}, timeout=60)
    assert status["status"] == "Succeeded", f"{status}\n{containers.logs()}"
    result = client.get(job["resultUrl"])
    assert result.status_code == 200, result.text
    return result.content


def test_image_without_arguments_serves_on_a_published_port(image: str, tmp_path: Path) -> None:
    """`docker run -p ... IMAGE`: the default command is `serve` on 0.0.0.0:8000 (the embedded mode, with no
    database or Redis configured), reachable through a published port on the engine's own network."""
    port = free_port()
    deployment = Containers(image, {}, tmp_path)
    name = f"reportgen-test-published-{secrets.token_hex(4)}"
    checked("run", "--detach", "--name", name, "-p", f"127.0.0.1:{port}:8000", image)
    deployment.names.append(name)
    try:
        wait_ready(deployment, f"http://127.0.0.1:{port}")
        assert podman("healthcheck", "run", name).returncode == 0, deployment.logs()
        assert deployment.stop(name) == 0, deployment.logs()
    finally:
        deployment.remove_all()
