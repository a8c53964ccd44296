"""The bare arq reference: a no-op job function under reportgen's own arq worker options (max_jobs, poll_delay,
keep_result, abort support, ...), without reportgen's cron jobs, on a queue of its own.
`python -m bench.noop_worker`; REPORTGEN_REDIS_URL and REPORTGEN_WORKER_CONCURRENCY as for `reportgen worker`."""

from __future__ import annotations

import os
from typing import Any

from arq.worker import run_worker

from bench.stack import NOOP_QUEUE
from infrastructure.arq.jobs import worker_options
from settings import Settings


async def noop(ctx: dict[str, Any], job_id: str) -> None:
    """Takes the same argument as reportgen's job function and does nothing."""


def settings() -> dict[str, Any]:
    config = Settings.from_env(os.environ)
    options = worker_options(
        max_jobs=config.worker_concurrency,
        job_timeout_seconds=config.report_timeout_seconds + 60,
        max_tries=config.max_attempts + 10,
        queue_name=NOOP_QUEUE,
        redis_url=config.redis_url,
    )
    return options | {"functions": [noop], "cron_jobs": []}


if __name__ == "__main__":
    run_worker(settings())
