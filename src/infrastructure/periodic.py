"""Periodic maintenance (the reconciler, the retention sweep): one run with its outcome logged, or a loop of them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from application.errors import QueueUnavailable, StorageUnavailable

log = logging.getLogger(__name__)

PeriodicWork = Callable[[], Awaitable[object]]
"""A zero-argument coroutine function, such as `ReconcileJobs.execute`; what it returns is logged."""

_TRANSIENT = (StorageUnavailable, QueueUnavailable)


async def run_once(fn: PeriodicWork, *, name: str) -> object:
    """Run `fn` once and log how it went; returns its result, or None when it raised.

    An outage (database or queue unavailable) is a warning without a traceback, since the next run will try
    again; any other exception is logged with its traceback. Neither is raised: one bad run must not stop the
    runs after it. Cancellation is not caught.
    """
    try:
        result = await fn()
    except _TRANSIENT as exc:
        log.warning("%s: skipped this run, a dependency is unavailable (%s: %s)", name, type(exc).__name__, exc)
        return None
    except Exception:
        log.exception("%s: the run failed", name)
        return None
    # Routine runs that found nothing to do stay at debug level, or a 5 s reconciler would flood the logs.
    log.log(logging.INFO if _did_something(result) else logging.DEBUG, "%s: done, returned %r", name, result)
    return result


def _did_something(result: object) -> bool:
    """A count above zero, or a dataclass of counts with one above zero (`Reconciled(enqueued=2, ...)`)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return any(getattr(result, field.name) for field in dataclasses.fields(result))
    return bool(result)


async def run_periodically(
    fn: Callable[[], Awaitable[object]], every_seconds: float, *, name: str, wake: asyncio.Event | None = None
) -> None:
    """Run `fn` at once, then again `every_seconds` after each run ends (or as soon as `wake` is set), until the
    task is cancelled.

    For the embedded mode, which has no arq cron: start it with `asyncio.create_task(...)` and cancel that task
    to stop. A run that raises is logged (see `run_once`) and the loop carries on.
    """
    if every_seconds <= 0:
        raise ValueError(f"every_seconds must be positive, got {every_seconds!r}")
    while True:
        if wake is not None:
            wake.clear()  # set from here on: one more run, after this one
        await run_once(fn, name=name)
        if wake is None:
            await asyncio.sleep(every_seconds)
            continue
        try:
            async with asyncio.timeout(every_seconds):
                await wake.wait()
        except TimeoutError:
            pass
