"""Where each process's Prometheus metrics live: one registry per process, or prometheus-client's multiprocess
mode under `reportgen serve --workers N` (any API process answers /metrics with the sum of all)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Metric, values
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess_metrics(path: Path) -> None:
    """Before `reportgen serve` starts several API processes: each writes its metrics to files under `path`
    (emptied here, so that counts start at zero with the server) and any of them answers /metrics with the sum.

    prometheus_client is already imported in this process, so its value class is chosen again here; the
    API processes are forked after this (or spawned, and then read the environment variable)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIR_ENV] = str(path)
    values.ValueClass = values.MultiProcessValue(process_identifier=_pid)  # type: ignore[no-untyped-call]


def _remember_pid() -> None:
    _PID[0] = os.getpid()


_PID = [os.getpid()]
os.register_at_fork(after_in_child=_remember_pid)


def _pid() -> int:
    """os.getpid() without the system call: prometheus_client asks for it on every metric update (to notice a fork),
    which cost more than the update itself. Kept right by a fork hook; a spawned process imports this afresh."""
    return _PID[0]


def use_single_process_metrics() -> None:
    """For a `reportgen worker`, which serves its own registry: never write into an API server's directory, even
    when PROMETHEUS_MULTIPROC_DIR leaked into its environment (a shared environment file)."""
    if os.environ.pop(MULTIPROCESS_DIR_ENV, None) is not None:
        values.ValueClass = values.MutexValue


class MultiProcessRegistry(CollectorRegistry):
    """Metrics register here as usual (names are still checked), but what it exposes is what every process of
    the server wrote under `path`: prometheus_client's multiprocess mode."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._files = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        metrics: Iterable[Metric] = self._files.collect()  # type: ignore[no-untyped-call]
        return metrics


def metrics_registry() -> CollectorRegistry:
    """The process's default registry; under `reportgen serve --workers N` (N > 1) the multiprocess one."""
    path = os.environ.get(MULTIPROCESS_DIR_ENV)
    return MultiProcessRegistry(path) if path else REGISTRY
