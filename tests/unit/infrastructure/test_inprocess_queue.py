import asyncio
from collections.abc import AsyncIterator, Callable
from uuid import UUID, uuid4

import pytest
from structlog.contextvars import get_contextvars

from application.errors import QueueUnavailable, StorageUnavailable
from application.run_report_job import Outcome, RunResult
from infrastructure.inprocess import InProcessJobQueue


class Handler:
    """Records every run; each job's runs answer from a script of outcomes or exceptions, then SUCCEEDED."""

    def __init__(self, *, hold: asyncio.Event | None = None) -> None:
        self.runs: list[UUID] = []
        self.logged_job_ids: list[object] = []
        self.script: dict[UUID, list[RunResult | Exception]] = {}
        self.hold = hold
        self.active = 0
        self.max_active = 0
        self.finished = 0

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


async def test_enqueue_of_a_waiting_or_running_id_adds_nothing() -> None:
    hold = asyncio.Event()
    handler = Handler(hold=hold)
    queue = InProcessJobQueue(handler, concurrency=1)
    running, waiting = uuid4(), uuid4()
    await queue.start()
    await queue.enqueue(running)
    await until(lambda: queue.running == 1)
    await queue.enqueue(waiting)

    await queue.enqueue(running, attempt=2)
    await queue.enqueue(waiting)
    assert (queue.waiting, queue.running) == (1, 1)

    hold.set()
    await until(lambda: handler.finished == 2)
    await queue.stop()
    assert handler.runs == [running, waiting]


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


async def test_retry_outcome_runs_the_job_again_after_its_delay(queue: InProcessJobQueue, handler: Handler) -> None:
    job_id = uuid4()
    handler.script[job_id] = [RunResult(Outcome.RETRY, retry_in_seconds=0.2, attempt=1)]
    loop = asyncio.get_running_loop()
    started = loop.time()

    await queue.enqueue(job_id)
    await until(lambda: handler.finished == 1)
    assert queue.waiting == 1  # held back for the retry delay
    await until(lambda: handler.finished == 2)

    assert handler.runs == [job_id, job_id]
    assert loop.time() - started >= 0.2
    assert (queue.waiting, queue.running) == (0, 0)


async def test_delayed_enqueue_waits_before_running(queue: InProcessJobQueue, handler: Handler) -> None:
    await queue.enqueue(uuid4(), delay_seconds=0.2)

    await asyncio.sleep(0.02)
    assert (handler.runs, queue.waiting) == ([], 1)
    await until(lambda: handler.finished == 1)


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


async def test_handler_exception_is_logged_and_the_consumers_keep_working(
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
    assert handler.finished == 1
    assert (queue.waiting, queue.running) == (0, 0)


async def test_stop_cancels_jobs_still_running_after_the_grace_period() -> None:
    handler = Handler(hold=asyncio.Event())
    queue = InProcessJobQueue(handler, concurrency=2)
    await queue.start()
    await queue.enqueue(uuid4())
    await until(lambda: queue.running == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()

    await queue.stop(grace_seconds=0.05)

    assert loop.time() - started < 1
    assert (handler.active, queue.running) == (0, 0)


async def test_enqueue_after_stop_raises_queue_unavailable(queue: InProcessJobQueue) -> None:
    await queue.stop()

    with pytest.raises(QueueUnavailable):
        await queue.enqueue(uuid4())


async def test_start_without_a_handler_is_refused() -> None:
    with pytest.raises(ValueError, match="handler"):
        await InProcessJobQueue().start()
