"""Metrics across processes: the worker's own endpoint and its setting, and the multiprocess registry that lets any
API process of `reportgen serve --workers N` answer /metrics for all of them."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bootstrap.metrics import MULTIPROCESS_DIR_ENV, MultiProcessRegistry
from bootstrap.worker import serve_metrics
from settings import Settings, SettingsError
from tests.loopback import free_port

_WRITER = """
from prometheus_client import Counter, Gauge
Counter("demo_requests", "Requests.", ["route"]).labels("/x").inc({n})
Gauge("demo_in_progress", "In progress.", multiprocess_mode="livesum").set(1)
"""


def test_worker_metrics_port_defaults_to_9464_and_zero_disables_it() -> None:
    assert Settings.from_env({}).worker_metrics_port == 9464
    assert Settings.from_env({"REPORTGEN_WORKER_METRICS_PORT": "0"}).worker_metrics_port == 0
    assert Settings.from_env({"REPORTGEN_WORKER_METRICS_PORT": "9100"}).worker_metrics_port == 9100


@pytest.mark.parametrize("value", ["65536", "-1", "http"])
def test_a_bad_worker_metrics_port_is_named(value: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({"REPORTGEN_WORKER_METRICS_PORT": value})

    assert [line.split(":")[0] for line in exc.value.problems] == ["REPORTGEN_WORKER_METRICS_PORT"]


def test_worker_serves_the_process_registry_until_stopped() -> None:
    port = free_port()
    stop = serve_metrics(port)
    assert stop is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        assert "process_cpu_seconds_total" in response.text or "python_info" in response.text
    finally:
        stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)


def test_a_busy_port_leaves_the_worker_running_without_metrics(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - where the endpoint binds
        taken.listen()
        port = taken.getsockname()[1]

        assert serve_metrics(port) is None

    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert str(port) in caplog.records[0].getMessage()


def test_zero_port_serves_nothing() -> None:
    assert serve_metrics(0) is None


def test_multiprocess_registry_sums_what_every_process_wrote(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROCESS_DIR_ENV: str(tmp_path)}
    for n in (2, 3):  # two processes, as two API processes of one server
        subprocess.run([sys.executable, "-c", _WRITER.format(n=n)], env=env, check=True, timeout=30)

    registry = MultiProcessRegistry(str(tmp_path))

    assert registry.get_sample_value("demo_requests_total", {"route": "/x"}) == 5
    assert registry.get_sample_value("demo_in_progress") == 2  # livesum: no process marked dead yet
