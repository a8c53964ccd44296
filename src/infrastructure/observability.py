"""Logging setup: structlog for our lines and for the standard library's, JSON in production."""

from __future__ import annotations

import logging
import sys
from uuid import UUID

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from application.run_report_job import JobHandler, RunResult


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> None:
    """Route structlog and stdlib logging to stdout, as JSON lines or as readable console output.

    `fmt` is `json` or `console`; contextvars (request_id, job_id) are merged into every line.
    """
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt != "console" else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The arq CLI installs a plain-text handler of its own; one format per process is what operators parse.
    arq_logger = logging.getLogger("arq")
    arq_logger.handlers.clear()
    arq_logger.propagate = True
    for noisy in ("asyncio", "aiosqlite", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _identity(logger: object, name: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    return event


class JobMetrics:
    """Counters of what workers did with jobs, on a given registry (the API's in embedded mode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "reportgen_job_runs", "Job deliveries handled by a worker, by outcome.", ["outcome"], registry=registry
        )
        self.duration = Histogram(
            "reportgen_job_run_duration_seconds",
            "Time a worker spent on one job delivery.",
            registry=registry,
            buckets=(0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
        )

    def instrument(self, run: JobHandler) -> JobHandler:
        """Wrap a job handler so that each delivery is counted by its outcome and timed."""

        async def instrumented(job_id: UUID) -> RunResult:
            with self.duration.time():
                try:
                    result = await run(job_id)
                except Exception:
                    self.runs.labels("error").inc()
                    raise
            self.runs.labels(result.outcome.value).inc()
            return result

        return instrumented
