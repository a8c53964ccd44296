"""run_sync: SQLAlchemy's sync code run from a coroutine in greenlets used again, awaiting as greenlet_spawn does."""

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import pytest
from greenlet import getcurrent  # type: ignore[import-untyped]
from sqlalchemy.util import await_only

from infrastructure.persistence.greenlets import IDLE_GREENLETS_KEPT, run_sync

REQUEST = contextvars.ContextVar("request", default="none")


class Boom(Exception):
    pass


def awaiting(value: Any) -> Any:
    """Sync code that awaits (as a pool's check-out does), then answers."""
    await_only(asyncio.sleep(0))
    return value


async def test_the_value_of_a_call_that_awaits_inside_is_returned() -> None:
    assert await run_sync(awaiting, 42) == 42


async def test_the_next_call_runs_in_the_greenlet_of_the_last_one() -> None:
    first = await run_sync(getcurrent)
    second = await run_sync(lambda: awaiting(getcurrent()))

    assert first is second
    assert first is not getcurrent()


async def test_a_greenlet_used_again_sees_the_context_of_its_new_caller() -> None:
    def seen() -> tuple[str, Any]:
        await_only(asyncio.sleep(0))
        return REQUEST.get(), getcurrent()

    async def call(name: str) -> tuple[str, Any]:  # in a task of its own: a context of its own
        REQUEST.set(name)
        return await run_sync(seen)

    first, used = await asyncio.create_task(call("first"))
    second, used_again = await asyncio.create_task(call("second"))

    assert used is used_again
    assert (first, second) == ("first", "second")


async def test_an_exception_of_the_call_is_raised_to_the_caller_and_its_greenlet_is_used_again() -> None:
    def failing() -> None:
        await_only(asyncio.sleep(0))
        raise Boom("from the sync code")

    used = await run_sync(getcurrent)
    with pytest.raises(Boom, match="from the sync code"):
        await run_sync(failing)

    assert await run_sync(getcurrent) is used


async def test_what_the_awaited_coroutine_raises_is_thrown_into_the_sync_code() -> None:
    async def refused() -> None:
        raise Boom("from the coroutine")

    def handling() -> str:
        try:
            await_only(refused())
        except Boom as exc:
            return f"handled: {exc}"
        return "not raised"

    assert await run_sync(handling) == "handled: from the coroutine"


async def test_a_cancelled_caller_cancels_the_sync_code_at_its_await_and_the_greenlet_serves_again() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    def waiting_forever() -> None:
        started.set()
        try:
            await_only(asyncio.sleep(3600))
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    task = asyncio.ensure_future(run_sync(waiting_forever))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert seen == ["cancelled inside"]
    assert await run_sync(awaiting, "after") == "after"


async def test_calls_waiting_at_the_same_time_each_have_a_greenlet_and_the_callers_context() -> None:
    async def call(name: str) -> tuple[str, Any]:
        REQUEST.set(name)

        def report() -> tuple[str, Any]:
            await_only(asyncio.sleep(0.01))
            return REQUEST.get(), getcurrent()

        return await run_sync(report)

    (a, greenlet_a), (b, greenlet_b) = await asyncio.gather(call("a"), call("b"))

    assert (a, b) == ("a", "b")
    assert greenlet_a is not greenlet_b


async def test_nothing_of_a_finished_call_is_kept_alive_by_its_waiting_greenlet() -> None:
    class Payload:
        pass

    argument, answer = Payload(), Payload()
    refs = weakref.ref(argument), weakref.ref(answer)

    def keep(given: Payload, reply: Payload) -> Payload:
        await_only(asyncio.sleep(0))
        return reply if given is not reply else given

    assert await run_sync(keep, argument, answer) is answer
    del argument, answer
    gc.collect()

    assert [ref() for ref in refs] == [None, None]


async def test_at_most_the_kept_number_of_finished_greenlets_wait_for_work() -> None:
    async def at_once(count: int) -> list[Any]:
        """`count` calls waiting at the same time; the greenlet of each."""
        gate = asyncio.Event()

        def held() -> Any:
            await_only(gate.wait())
            return getcurrent()

        calls = [asyncio.ensure_future(run_sync(held)) for _ in range(count)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*calls)

    used = await at_once(IDLE_GREENLETS_KEPT + 10)  # kept referenced here, so their ids are not reused
    again = await at_once(IDLE_GREENLETS_KEPT + 10)

    assert len({id(g) for g in used}) == IDLE_GREENLETS_KEPT + 10
    assert len({id(g) for g in again} & {id(g) for g in used}) == IDLE_GREENLETS_KEPT
