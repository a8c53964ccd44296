"""Finished jobs reach the waiters of another process over a real Redis channel."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis

from application.ports import JobTransition
from domain.jobs import JobExecutionLog, JobStatus, JobStatusChanged
from domain.reports import ReportConfiguration, ResolvedRequest
from infrastructure.job_signals import LocalJobSignals, RedisJobSignals
from tests.services import REDIS_URL, require

pytestmark = pytest.mark.integration


def transition(job_id: UUID, old: JobStatus, new: JobStatus) -> JobTransition:
    report = ReportConfiguration(id=uuid4(), name="r", query="SELECT 1", formats=("csv",))
    job = JobExecutionLog.queue(
        job_id=job_id,
        report=report,
        request=ResolvedRequest(format="csv", parameters={}, parameter_types={}),
        owner_id="alice",
        now=datetime.now(UTC),
    )
    return JobTransition(JobStatusChanged(job_id, "alice", old, new), job)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    require("Redis", REDIS_URL)
    client: Redis = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def listening(signals: RedisJobSignals) -> AsyncIterator[None]:
    task = asyncio.create_task(signals.listen(REDIS_URL))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def subscribed(redis: Redis, channel: str, count: int = 1) -> None:
    for _ in range(500):
        if (await redis.pubsub_numsub(channel))[0][1] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nobody subscribed to {channel} within 5 s")


async def test_a_job_finished_in_another_process_wakes_the_waiter_of_this_one(redis: Redis) -> None:
    channel = f"reportgen:test-signals:{uuid4()}"
    here = LocalJobSignals()
    worker = RedisJobSignals(redis, channel)  # the publishing side: another process's subscriber
    job_id = uuid4()
    async with listening(RedisJobSignals(redis, channel, here)), here.watch(job_id) as watch:
        await subscribed(redis, channel)
        await worker.publish([transition(job_id, JobStatus.QUEUED, JobStatus.RUNNING)])
        with pytest.raises(TimeoutError):  # not finished: no signal
            async with asyncio.timeout(0.2):
                await watch.changed()
        await worker.publish([transition(job_id, JobStatus.RUNNING, JobStatus.SUCCEEDED)])
        async with asyncio.timeout(2):
            assert await watch.changed()


async def test_a_listener_that_lost_redis_subscribes_again_and_wakes_every_waiter(redis: Redis) -> None:
    channel = f"reportgen:test-signals:{uuid4()}"
    here = LocalJobSignals()
    job_id = uuid4()
    async with listening(RedisJobSignals(redis, channel, here)), here.watch(job_id) as watch:
        await subscribed(redis, channel)
        killed = await redis.client_kill_filter(_type="pubsub", skipme=True)
        assert killed >= 1
        async with asyncio.timeout(5):  # a message may have been missed meanwhile: every waiter reads again
            assert await watch.changed()
        await subscribed(redis, channel)
        await RedisJobSignals(redis, channel).publish([transition(job_id, JobStatus.RUNNING, JobStatus.FAILED)])
        async with asyncio.timeout(2):
            assert await watch.changed()
