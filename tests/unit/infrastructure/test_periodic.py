import asyncio
import logging
from dataclasses import dataclass
from itertools import pairwise

import pytest

from application.errors import QueueUnavailable, StorageUnavailable
from infrastructure.periodic import run_once, run_periodically


async def test_runs_at_once_then_every_period_and_survives_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="infrastructure.periodic")
    script: list[object] = [RuntimeError("boom"), StorageUnavailable("database down"), 0, 3]
    calls: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def work() -> object:
        calls.append(loop.time())
        if len(calls) == len(script):
            done.set()
        step = script[len(calls) - 1] if len(calls) <= len(script) else 0
        if isinstance(step, Exception):
            raise step
        return step

    started = loop.time()
    task = asyncio.create_task(run_periodically(work, 0.02, name="reconcile"))
    async with asyncio.timeout(2):
        await done.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert calls[0] - started < 0.02  # the first run does not wait for a period
    assert all(later - earlier >= 0.019 for earlier, later in pairwise(calls))  # the period, between two runs
    records = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert ("ERROR", "reconcile: the run failed") in records
    assert records[0][0] == "ERROR"
    assert caplog.records[0].exc_info is not None  # with its traceback
    assert (
        "WARNING",
        "reconcile: skipped this run, a dependency is unavailable (StorageUnavailable: database down)",
    ) in records
    assert ("DEBUG", "reconcile: done, returned 0") in records
    assert ("INFO", "reconcile: done, returned 3") in records


async def test_run_once_returns_the_result_or_none_when_the_run_failed() -> None:
    async def three() -> int:
        return 3

    async def queue_down() -> int:
        raise QueueUnavailable("redis down")

    assert await run_once(three, name="sweep") == 3
    assert await run_once(queue_down, name="sweep") is None


@dataclass(frozen=True, slots=True)
class Counts:
    enqueued: int = 0
    failed: int = 0


@pytest.mark.parametrize(
    ("result", "level"),
    [(0, "DEBUG"), (None, "DEBUG"), (Counts(), "DEBUG"), (2, "INFO"), (Counts(failed=1), "INFO")],
)
async def test_a_run_that_did_nothing_is_logged_at_debug_level(
    caplog: pytest.LogCaptureFixture, result: object, level: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="infrastructure.periodic")

    async def work() -> object:
        return result

    await run_once(work, name="reconcile")

    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        (level, f"reconcile: done, returned {result!r}")
    ]


async def test_run_once_lets_a_cancellation_through() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_once(cancelled, name="sweep")


async def test_a_period_that_is_not_positive_is_refused() -> None:
    async def work() -> None:
        return None

    with pytest.raises(ValueError, match="positive"):
        await run_periodically(work, 0, name="sweep")


async def test_a_wake_runs_the_work_again_at_once_rather_than_after_the_period() -> None:
    runs: list[float] = []
    second = asyncio.Event()
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def work() -> object:
        runs.append(loop.time())
        if len(runs) == 2:
            second.set()
        return 0

    task = asyncio.create_task(run_periodically(work, 60, name="deliver_webhooks", wake=wake))
    try:
        await asyncio.sleep(0.05)
        assert len(runs) == 1
        wake.set()
        async with asyncio.timeout(2):
            await second.wait()
        assert runs[1] - runs[0] < 1, "woken, not after the 60 s period"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
