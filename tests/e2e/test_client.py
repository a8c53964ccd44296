"""`reportgen run / reports / jobs / download` and `reportgen_client` against a real embedded server: a complete
file and exit 0, a failed job's code and exit 1, the tables, a download resumed after its connection was cut, and
the progress bars (and Ctrl-C) on a terminal."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reportgen_client import Client
from tests.e2e.conftest import BIN, Deployment, _base_env
from tests.e2e.cutting_proxy import CuttingProxy
from tests.e2e.test_embedded_mode import printed_token
from tests.loopback import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SALES = "00000000-0000-4000-8000-000000000001"
ORDER_LINES = "00000000-0000-4000-8000-000000000002"


@dataclass
class Server:
    url: str
    token: str

    def env(self, url: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTGEN_") and k not in ("COLUMNS", "LINES")}
        return env | {"REPORTGEN_URL": url or self.url, "REPORTGEN_TOKEN": self.token}

    def cli(self, *args: str, cwd: Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "reportgen"), *args], env=self.env(url), cwd=cwd, capture_output=True, text=True, timeout=45
        )

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10)

    def etag(self, job_id: str) -> str:
        with self.http() as http:
            return http.head(f"/api/v1/jobs/{job_id}/result").headers["etag"].strip('"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One embedded `reportgen serve` (SQLite, in-process worker, demo reports) for the module; its printed token
    is an admin's."""
    tmp = tmp_path_factory.mktemp("client-server")
    port = free_port()
    deployment = Deployment(f"http://127.0.0.1:{port}", _base_env(tmp) | {"REPORTGEN_POLL_AFTER_SECONDS": "1"}, tmp)
    process = deployment.start("embedded", "serve", "--port", str(port))
    try:
        deployment.wait_ready(timeout=60)
        yield Server(deployment.base_url, printed_token(process))
    finally:
        deployment.stop_all()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_writes_the_complete_result_and_exits_0(server: Server, tmp_path: Path) -> None:
    done = server.cli("run", SALES, "-p", "region=EU", "--format", "csv", "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "nothing but the result when not on a terminal"
    job = json.loads(done.stdout)
    assert job["status"] == "Succeeded"
    assert job["parameters"]["region"] == "EU"
    path = tmp_path / job["file"]
    assert re.fullmatch(r"sales-by-region-[0-9a-f]{8}\.csv", job["file"])
    assert sha256(path) == server.etag(job["jobId"])
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == ["region", "product", "orders", "units", "revenue"]
    assert {row[0] for row in rows[1:]} == {"EU"}


def test_a_failed_job_exits_1_with_its_error_code_and_message(server: Server, tmp_path: Path) -> None:
    report = {"name": "Broken", "query": "SELECT json('not json') AS x", "formats": ["csv"]}
    with server.http() as http:
        report_id = http.post("/api/v1/reports", json=report).raise_for_status().json()["id"]

    done = server.cli("run", report_id, "-o", "broken.csv", cwd=tmp_path)

    assert done.returncode == 1
    assert re.fullmatch(
        r"reportgen: job [0-9a-f-]{36} Failed: REPORT_QUERY_FAILED: The report query failed: .+\n", done.stderr
    )
    assert done.stdout == ""
    assert not (tmp_path / "broken.csv").exists()


def test_reports_and_jobs_are_tables(server: Server, tmp_path: Path) -> None:
    with Client(server.url, server.token) as client:
        job_id = client.submit(SALES, {"region": "US"}).job_id
        reports = server.cli("reports", cwd=tmp_path)
        jobs = server.cli("jobs", "--report", SALES, "--limit", "0", cwd=tmp_path)
        paged = [job.job_id for job in client.jobs(report_id=SALES, page_size=1)]  # follows Link: one job a page

    assert reports.returncode == jobs.returncode == 0
    header, *lines = [line.split("\t") for line in reports.stdout.splitlines()]
    assert header == ["ID", "Name", "Formats", "Parameters", "Description"]
    sales = [SALES, "Sales by region", "csv, json, xlsx, pdf, ndjson", "region: string, since: date = 2026-01-01"]
    assert sales in [line[:4] for line in lines]
    header, *rows = [line.split("\t") for line in jobs.stdout.splitlines()]
    assert header == ["Job ID", "Report", "Status", "Progress", "Format", "Created (UTC)", "Error"]
    assert rows[0][:2] == [job_id, "Sales by region"], "newest first"
    assert rows[0][2] in ("Queued", "Running", "Succeeded")
    assert [row[0] for row in rows] == paged


def test_download_resumes_after_the_connection_is_cut_mid_body(server: Server, tmp_path: Path) -> None:
    with Client(server.url, server.token) as client:
        job = client.wait_for(client.submit(ORDER_LINES, {"copies": 1}, "csv").job_id, timeout=30)
    assert job.status == "Succeeded"

    with CuttingProxy(int(server.url.rsplit(":", 1)[1]), cut_after=300_000) as proxy:
        done = server.cli("download", job.job_id, "-o", "lines.csv", cwd=tmp_path, url=f"http://127.0.0.1:{proxy.port}")

    assert done.returncode == 0, done.stderr
    assert done.stdout == "lines.csv\n"
    assert sha256(tmp_path / "lines.csv") == server.etag(job.job_id)
    assert (tmp_path / "lines.csv").stat().st_size > 300_000
    first, second, *_ = (bytes(sent).decode("latin-1") for sent in proxy.sent)
    assert "range:" not in first.lower()
    resumed = re.search(r"range: bytes=(\d+)-\r\n", second, re.IGNORECASE)
    assert resumed, second
    assert 0 < int(resumed.group(1)) < 300_000
    assert f'if-range: "{server.etag(job.job_id)}"' in second.lower()


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def in_terminal(server: Server, *args: str, cwd: Path, until: str = "", answer: bytes = b"") -> tuple[int, str]:
    """Run `reportgen ARGS` with stdin, stdout and stderr on a pseudo-terminal; once the screen shows `until`, send
        SIGINT (Ctrl-C) and then type `answer`. Returns the exit status and everything drawn, without colours and
    cursor moves."""
    leader, follower = pty.openpty()
    env = server.env() | {"TERM": "xterm-256color"}
    process = subprocess.Popen(
        [str(BIN / "reportgen"), *args], stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd
    )
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 0.1)[0]:
            try:
                chunk = os.read(leader, 65_536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            screen += chunk
        if until and until.encode() in screen:
            until = ""
            process.send_signal(signal.SIGINT)
        if answer and b"Cancel job" in screen:
            os.write(leader, answer)
            answer = b""
    os.close(leader)
    return process.wait(timeout=10), ANSI_ESCAPE.sub("", screen.decode(errors="replace"))


def test_run_draws_a_job_bar_and_a_download_bar_on_a_terminal(server: Server, tmp_path: Path) -> None:
    status, screen = in_terminal(server, "run", ORDER_LINES, "-p", "copies=3", "-o", "lines.csv", cwd=tmp_path)

    assert status == 0, screen
    # With `wait`, a small job may finish within the first wait: the bar is drawn before it, without a status yet.
    assert re.search(r"Order lines export (Queued |Running )?━+ +\d+%", screen), "the bar drawn while the job ran"
    assert re.search(r"Order lines export Succeeded ━+ 100% 0:00:\d\d\r\n", screen), "and left at its end"
    assert re.search(r"Downloading ━+ (\d\.\d)/\1 MB [\d.]+ MB/s", screen)
    assert screen.rstrip().endswith("lines.csv")
    assert (tmp_path / "lines.csv").stat().st_size > 0


def test_ctrl_c_while_waiting_asks_and_cancels_the_job(server: Server, tmp_path: Path) -> None:
    status, screen = in_terminal(
        server, "run", ORDER_LINES, "-p", "copies=100", cwd=tmp_path, until="Running", answer=b"y\r"
    )

    assert status == 130, screen
    job_id = re.search(r"Job ([0-9a-f-]{36})", screen)
    assert job_id, screen
    assert f"Cancel job {job_id.group(1)}?" in screen
    assert f"job {job_id.group(1)} Cancelled" in screen
    with Client(server.url, server.token) as client:
        assert client.job(job_id.group(1)).status == "Cancelled"
