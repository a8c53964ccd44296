import json
import logging
from uuid import UUID, uuid4

import pytest
import structlog
from prometheus_client import CollectorRegistry

from application.run_report_job import Outcome, RunResult
from infrastructure.observability import JobMetrics, configure_logging


async def test_job_metrics_count_each_delivery_by_outcome_and_time_it() -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)

    async def succeed(job_id: UUID) -> RunResult:
        return RunResult(Outcome.SUCCEEDED)

    async def crash(job_id: UUID) -> RunResult:
        raise RuntimeError("boom")

    await metrics.instrument(succeed)(uuid4())
    await metrics.instrument(succeed)(uuid4())
    with pytest.raises(RuntimeError):
        await metrics.instrument(crash)(uuid4())

    assert registry.get_sample_value("reportgen_job_runs_total", {"outcome": "succeeded"}) == 2
    assert registry.get_sample_value("reportgen_job_runs_total", {"outcome": "error"}) == 1
    assert registry.get_sample_value("reportgen_job_run_duration_seconds_count") == 3


def test_json_logs_carry_bound_context_and_stdlib_extras(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(fmt="json", level="INFO")
        with structlog.contextvars.bound_contextvars(request_id="req-1"):
            logging.getLogger("reportgen.test").info("job started", extra={"job_id": "j-1"})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (line["event"], line["request_id"], line["job_id"], line["level"]) == ("job started", "req-1", "j-1", "info")
