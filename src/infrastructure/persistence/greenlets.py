"""SQLAlchemy's synchronous code (a pool's check-out and check-in) run from a coroutine, in a greenlet used again.

SQLAlchemy's `greenlet_spawn` starts a new greenlet for every call, and CPython 3.11 gives each new greenlet a frame
stack of its own: a chunk mapped when the greenlet's first frame is pushed and unmapped when it ends, two system calls
and a page fault for every call (bench/README.md, "Pricing the access line", has the cost). `run_sync` keeps the
finished greenlets of its thread and runs the next call in one of them.

SQLAlchemy's `await_` works in them as in its own: since 2.0.31 it accepts any greenlet that has the attribute
`__sqlalchemy_greenlet_provider__` (its changelog: "duck-typed compatibility with third party libraries that
implement SQLAlchemy's greenlet-to-asyncio pattern directly") and switches to its parent with the awaitable;
`run_sync` awaits it and switches back with the result, or throws into the greenlet what the await raised (a
cancellation too), as `greenlet_spawn` does.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet  # type: ignore[import-untyped]

T = TypeVar("T")

IDLE_GREENLETS_KEPT = 64
"""Finished greenlets kept per thread (each holds its frame stack, 16 KiB); more run at once only under load."""


class _Outcome:
    """How a call ended: its value, or the exception it raised."""

    __slots__ = ("error", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None


class _Runner(greenlet):  # type: ignore[misc]  # greenlet ships no type information
    """A greenlet that runs one call after another, waiting in between for the next."""

    __sqlalchemy_greenlet_provider__ = True  # SQLAlchemy's `await_` may switch out of it (to its parent)

    def __init__(self, parent: Any) -> None:
        super().__init__(self._serve, parent)

    def _serve(self, fn: Callable[..., Any] | None, args: tuple[Any, ...] | None) -> None:
        while True:
            outcome = _Outcome()
            try:
                outcome.value = fn(*args)  # type: ignore[misc]  # set by every switch into this greenlet
            except GreenletExit:  # thrown in when a waiting greenlet is collected: let it end
                raise
            except BaseException as exc:  # handed to the caller, who raises it
                outcome.error = exc
            fn = args = None  # nothing of the call is kept alive by a greenlet waiting for the next one
            fn, args = self.parent.switch(outcome)


_threads = threading.local()


def _idle() -> list[_Runner]:
    idle: list[_Runner] | None = getattr(_threads, "idle", None)
    if idle is None:
        idle = _threads.idle = []
    return idle


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a greenlet of this thread where SQLAlchemy's `await_` may await; its value, or its exception.
    The same as `await sqlalchemy.util.greenlet_spawn(fn, *args)`, without a new greenlet per call."""
    idle = _idle()
    caller = getcurrent()
    runner = idle.pop() if idle else _Runner(caller)
    runner.parent = caller
    runner.gr_context = caller.gr_context  # the calling task's context variables (structlog's request id)
    result = runner.switch(fn, args)
    while not isinstance(result, _Outcome):
        try:
            awaited = await result
        except BaseException:
            result = runner.throw(*sys.exc_info())
        else:
            result = runner.switch(awaited)
    if len(idle) < IDLE_GREENLETS_KEPT:
        idle.append(runner)
    value, error = result.value, result.error
    result.value = result.error = None  # the waiting greenlet still refers to this outcome
    if error is not None:
        raise error
    return value  # type: ignore[no-any-return]
