import asyncio
from collections.abc import AsyncIterator, Callable
from uuid import UUID, uuid4

import pytest
from structlog.contextvars import get_contextvars

from application.errors import QueueUnavailable, StorageUnavailable
from application.run_report_job import Outcome, RunResult
from infrastructure.inprocess import InProcessJobQueue


class Handler:
    """Records every run; each job's runs answer from a script of outcomes or exceptions, then SUCCEEDED.

    With `hold`, each run waits for that event first (a run never released ends only when cancelled).
    """

    def __init__(self, *, hold: asyncio.Event | None = None) -> None:
        self.runs: list[UUID] = []
        self.logged_job_ids: list[object] = []
        self.script: dict[UUID, list[RunResult | Exception]] = {}
        self.hold = hold
        self.active = 0
        self.max_active = 0
        self.finished = 0
        self.cancelled: list[UUID] = []

    async def __call__(self, job_id: UUID) -> RunResult:
        self.runs.append(job_id)
        self.logged_job_ids.append(get_contextvars().get("job_id"))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.hold is not None:
                await self.hold.wait()
            await asyncio.sleep(0)
            steps = self.script.get(job_id, [])
            step = steps.pop(0) if steps else RunResult(Outcome.SUCCEEDED)
            if isinstance(step, Exception):
                raise step
            return step
        except asyncio.CancelledError:
            self.cancelled.append(job_id)
            raise
        finally:
            self.active -= 1
            self.finished += 1


async def until(condition: Callable[[], bool]) -> None:
    """Poll the queue's state (there is no event to wait on from outside), for at most two seconds."""
    async with asyncio.timeout(2):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
async def queue(handler: Handler) -> AsyncIterator[InProcessJobQueue]:
    queue = InProcessJobQueue(handler, concurrency=2, storage_retries=2, storage_retry_base_seconds=0.01)
    await queue.start()
    yield queue
    await queue.stop(grace_seconds=1)


async def test_enqueued_job_is_run_once() -> None:
    handler = Handler()
    queue = InProcessJobQueue(concurrency=1)
    job_id = uuid4()
    await queue.enqueue(job_id)
    await queue.start(handler)

    await until(lambda: handler.finished == 1)
    await queue.stop()

    assert handler.runs == [job_id]
    assert handler.logged_job_ids == [str(job_id)]  # bound to the log context while the job runs
    assert (queue.waiting, queue.running) == (0, 0)


async def test_enqueue_of_a_waiting_or_running_attempt_adds_nothing() -> None:
    hold = asyncio.Event()
    handler = Handler(hold=hold)
    queue = InProcessJobQueue(handler, concurrency=1)
    running, waiting = uuid4(), uuid4()
    await queue.start()
    await queue.enqueue(running)
    await until(lambda: queue.running == 1)
    await queue.enqueue(waiting)

    await queue.enqueue(running, attempt=1)
    await queue.enqueue(waiting, attempt=1)
    assert (queue.waiting, queue.running) == (1, 1)

    hold.set()
    await until(lambda: handler.finished == 2)
    await queue.stop()
    assert handler.runs == [running, waiting]


async def test_the_next_attempt_is_accepted_while_the_current_one_runs(
    queue: InProcessJobQueue, handler: Handler
) -> None:
    hold = handler.hold = asyncio.Event()
    job_id = uuid4()
    await queue.enqueue(job_id, attempt=1)
    await until(lambda: queue.running == 1)

    await queue.enqueue(job_id, attempt=2, delay_seconds=0.05)  # as the use case does when it hands a job back
    assert (queue.waiting, queue.running) == (1, 1)
    hold.set()
    await until(lambda: handler.finished == 2)

    assert handler.runs == [job_id, job_id]
    assert (queue.waiting, queue.running) == (0, 0)


async def test_no_more_jobs_run_at_once_than_the_concurrency() -> None:
    hold = asyncio.Event()
    handler = Handler(hold=hold)
    queue = InProcessJobQueue(handler, concurrency=3)
    await queue.start()
    for _ in range(10):
        await queue.enqueue(uuid4())

    await until(lambda: queue.running == 3)
    await asyncio.sleep(0.02)
    assert (queue.running, queue.waiting) == (3, 7)

    hold.set()
    await until(lambda: handler.finished == 10)
    await queue.stop()
    assert handler.max_active == 3


async def test_a_retry_outcome_is_not_enqueued_again_by_the_queue(queue: InProcessJobQueue, handler: Handler) -> None:
    job_id = uuid4()
    handler.script[job_id] = [RunResult(Outcome.RETRY, retry_in_seconds=0.01, attempt=1)]

    await queue.enqueue(job_id)
    await until(lambda: handler.finished == 1)
    await asyncio.sleep(0.05)

    assert handler.runs == [job_id]  # the use case enqueues the next attempt itself
    assert (queue.waiting, queue.running) == (0, 0)


async def test_delayed_enqueue_runs_after_its_delay(queue: InProcessJobQueue, handler: Handler) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await queue.enqueue(uuid4(), delay_seconds=0.2)

    await asyncio.sleep(0.02)
    assert (handler.runs, queue.waiting) == ([], 1)
    await until(lambda: handler.finished == 1)
    assert loop.time() - started >= 0.2


async def test_abort_cancels_the_running_attempt(queue: InProcessJobQueue, handler: Handler) -> None:
    hold = handler.hold = asyncio.Event()
    job_id, other = uuid4(), uuid4()
    await queue.enqueue(job_id, attempt=3)
    await queue.enqueue(other)
    await until(lambda: queue.running == 2)

    await queue.abort(job_id, 2)  # not the running attempt: nothing happens
    await asyncio.sleep(0.02)
    assert (handler.cancelled, queue.running) == ([], 2)

    await queue.abort(job_id, 3)
    await until(lambda: queue.running == 1)

    assert handler.cancelled == [job_id]
    await queue.enqueue(job_id, attempt=3)  # no longer held: it may be enqueued again, and its slot is free
    await until(lambda: queue.running == 2)
    hold.set()
    await until(lambda: handler.finished == 3)


async def test_abort_drops_a_waiting_attempt() -> None:
    hold = asyncio.Event()
    handler = Handler(hold=hold)
    queue = InProcessJobQueue(handler, concurrency=1)
    await queue.start()
    busy, queued, delayed = uuid4(), uuid4(), uuid4()
    await queue.enqueue(busy)
    await queue.enqueue(queued)
    await queue.enqueue(delayed, delay_seconds=0.05)
    await until(lambda: queue.running == 1)

    await queue.abort(queued, 1)
    await queue.abort(delayed, 1)
    await queue.abort(uuid4(), 1)  # unknown: a no-op
    assert (queue.waiting, queue.running) == (0, 1)
    hold.set()
    await asyncio.sleep(0.1)
    await queue.stop()

    assert handler.runs == [busy]


async def test_storage_unavailable_is_retried_with_backoff_then_given_up(
    queue: InProcessJobQueue, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    flaky, down = uuid4(), uuid4()
    handler.script[flaky] = [StorageUnavailable("down")]
    handler.script[down] = [StorageUnavailable("down")] * 5

    await queue.enqueue(flaky)
    await queue.enqueue(down)
    await until(lambda: handler.runs.count(flaky) == 2 and handler.runs.count(down) == 3)
    await until(lambda: queue.waiting == 0 and queue.running == 0)
    await asyncio.sleep(0.05)

    assert handler.runs.count(down) == 3  # the first try and storage_retries=2 more, then it is left alone
    assert "stayed unavailable" in caplog.text


async def test_handler_exception_is_logged_and_the_queue_keeps_working(
    queue: InProcessJobQueue, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    broken = [uuid4(), uuid4(), uuid4()]
    for job_id in broken:
        handler.script[job_id] = [RuntimeError("boom")]
    healthy = uuid4()

    for job_id in [*broken, healthy]:
        await queue.enqueue(job_id)
    await until(lambda: handler.finished == 4)

    assert healthy in handler.runs
    assert caplog.text.count("the handler failed") == 3
    await queue.enqueue(broken[0])  # not held any more: it may be enqueued again
    await until(lambda: handler.finished == 5)


async def test_stop_lets_running_jobs_finish_within_the_grace_period() -> None:
    hold = asyncio.Event()
    handler = Handler(hold=hold)
    queue = InProcessJobQueue(handler, concurrency=1)
    await queue.start()
    first, second = uuid4(), uuid4()
    await queue.enqueue(first)
    await queue.enqueue(second)
    await until(lambda: queue.running == 1)

    asyncio.get_running_loop().call_later(0.05, hold.set)
    await queue.stop(grace_seconds=2)

    assert handler.runs == [first]  # the waiting job is dropped: its row stays Queued for the reconciler
    assert (handler.finished, handler.cancelled) == (1, [])
    assert (queue.waiting, queue.running) == (0, 0)


async def test_stop_cancels_jobs_still_running_after_the_grace_period() -> None:
    handler = Handler(hold=asyncio.Event())
    queue = InProcessJobQueue(handler, concurrency=2)
    await queue.start()
    job_id = uuid4()
    await queue.enqueue(job_id)
    await until(lambda: queue.running == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()

    await queue.stop(grace_seconds=0.1)

    assert 0.1 <= loop.time() - started < 1
    assert handler.cancelled == [job_id]  # the use case catches this and hands the job back
    assert (handler.active, queue.running) == (0, 0)


async def test_enqueue_after_stop_raises_queue_unavailable(queue: InProcessJobQueue) -> None:
    await queue.stop()

    with pytest.raises(QueueUnavailable):
        await queue.enqueue(uuid4())


async def test_start_without_a_handler_is_refused() -> None:
    with pytest.raises(ValueError, match="handler"):
        await InProcessJobQueue().start()


async def test_stop_gives_up_on_a_job_that_ignores_its_cancellation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("infrastructure.inprocess.CANCEL_WAIT_SECONDS", 0.05)
    release = asyncio.Event()

    async def stubborn(job_id: UUID) -> RunResult:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a handler that never lets go
        return RunResult(Outcome.SUCCEEDED)

    queue = InProcessJobQueue(stubborn, concurrency=1)
    await queue.start()
    await queue.enqueue(uuid4())
    await until(lambda: queue.running == 1)

    async with asyncio.timeout(1):
        await queue.stop(grace_seconds=0.05)

    assert "did not end" in caplog.text
    release.set()
    await until(lambda: queue.running == 0)
