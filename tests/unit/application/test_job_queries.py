import asyncio
import time
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from application.errors import ArtifactMissing
from application.job_queries import GetJobResult, GetJobStatus, JobQuery
from domain.errors import InvalidInput, JobNotFound, ResultExpired, ResultNotReady
from domain.jobs import ArtifactRef, JobStatus
from tests.fakes import FakeArtifactStore, FakeClock, FakeDatabase, FakeJobReader, FakeJobSignals


async def test_owner_sees_status(db: FakeDatabase, job_id: UUID) -> None:
    job = await GetJobStatus(FakeJobReader(db)).execute(JobQuery(job_id=job_id, user_id="alice"))
    assert job.status is JobStatus.QUEUED


async def test_other_users_job_is_reported_as_missing_but_admin_sees_it(db: FakeDatabase, job_id: UUID) -> None:
    with pytest.raises(JobNotFound):
        await GetJobStatus(FakeJobReader(db)).execute(JobQuery(job_id=job_id, user_id="bob"))
    job = await GetJobStatus(FakeJobReader(db)).execute(JobQuery(job_id=job_id, user_id="bob", is_admin=True))
    assert job.id == job_id


async def test_unknown_job_is_not_found(db: FakeDatabase) -> None:
    with pytest.raises(JobNotFound):
        await GetJobStatus(FakeJobReader(db)).execute(JobQuery(job_id=uuid4(), user_id="alice"))


async def test_result_before_success_is_not_ready_with_the_status(db: FakeDatabase, job_id: UUID) -> None:
    with pytest.raises(ResultNotReady) as exc:
        await GetJobResult(FakeJobReader(db), FakeArtifactStore(), FakeClock()).execute(
            JobQuery(job_id=job_id, user_id="alice")
        )
    assert exc.value.status == "Queued"


async def test_result_of_succeeded_job_streams_the_artifact(db: FakeDatabase, job_id: UUID, clock: FakeClock) -> None:
    store = FakeArtifactStore()
    store.files["k"] = b"a,b\r\n"
    job = db.jobs[job_id]
    job.start(clock(), clock.now)
    job.succeed(clock(), ArtifactRef("k", 5, "sha"))
    result = await GetJobResult(FakeJobReader(db), store, clock).execute(JobQuery(job_id=job_id, user_id="alice"))
    assert b"".join([chunk async for chunk in result.content()]) == b"a,b\r\n"
    assert result.artifact.sha256 == "sha"


async def test_result_past_its_retention_is_expired(db: FakeDatabase, job_id: UUID, clock: FakeClock) -> None:
    store = FakeArtifactStore()
    store.files["k"] = b"x"
    job = db.jobs[job_id]
    job.start(clock(), clock.now)
    job.succeed(clock(), ArtifactRef("k", 1, "sha"), expires_at=clock.now + timedelta(hours=1))
    get_result = GetJobResult(FakeJobReader(db), store, clock)
    await get_result.execute(JobQuery(job_id=job_id, user_id="alice"))
    clock.advance(3600)
    with pytest.raises(ResultExpired):
        await get_result.execute(JobQuery(job_id=job_id, user_id="alice"))


async def test_result_whose_artifact_is_gone_says_so(db: FakeDatabase, job_id: UUID, clock: FakeClock) -> None:
    job = db.jobs[job_id]
    job.start(clock(), clock.now)
    job.succeed(clock(), ArtifactRef("gone", 5, "sha"))
    with pytest.raises(ArtifactMissing):
        await GetJobResult(FakeJobReader(db), FakeArtifactStore(), FakeClock()).execute(
            JobQuery(job_id=job_id, user_id="alice")
        )


async def _finish_soon(db: FakeDatabase, signals: FakeJobSignals, job_id: UUID, clock: FakeClock) -> None:
    await asyncio.sleep(0.05)
    job = db.jobs[job_id]
    job.start(clock(), clock.now)
    job.fail(clock(), "REPORT_TIMEOUT", "too slow")
    signals.notify(job_id)


async def test_a_waiting_status_request_answers_when_the_job_finishes(
    db: FakeDatabase, job_id: UUID, clock: FakeClock
) -> None:
    signals = FakeJobSignals()
    get_status = GetJobStatus(FakeJobReader(db), signals)
    finisher = asyncio.create_task(_finish_soon(db, signals, job_id, clock))
    started = time.monotonic()
    job = await get_status.execute(JobQuery(job_id=job_id, user_id="alice", wait_seconds=30))
    await finisher
    assert job.status is JobStatus.FAILED
    assert time.monotonic() - started < 5


async def test_a_waiting_status_request_answers_with_the_current_status_when_the_time_is_up(
    db: FakeDatabase, job_id: UUID
) -> None:
    signals = FakeJobSignals()
    started = time.monotonic()
    job = await GetJobStatus(FakeJobReader(db), signals).execute(
        JobQuery(job_id=job_id, user_id="alice", wait_seconds=0.1)
    )
    assert job.status is JobStatus.QUEUED
    assert 0.1 <= time.monotonic() - started < 2
    assert signals.watches == 1
    assert signals.events[job_id] == [], "the watch is gone after the answer"


async def test_a_signal_for_a_job_still_running_keeps_the_request_waiting(db: FakeDatabase, job_id: UUID) -> None:
    signals = FakeJobSignals()
    waiting = asyncio.create_task(
        GetJobStatus(FakeJobReader(db), signals).execute(JobQuery(job_id=job_id, user_id="alice", wait_seconds=0.3))
    )
    await asyncio.sleep(0.05)
    signals.notify(job_id)  # e.g. the channel was lost and found again: look, it is still Queued
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert (await waiting).status is JobStatus.QUEUED


async def test_waiting_requests_answer_at_once_when_the_server_stops(db: FakeDatabase, job_id: UUID) -> None:
    signals = FakeJobSignals()
    get_status = GetJobStatus(FakeJobReader(db), signals)
    waiting = asyncio.create_task(get_status.execute(JobQuery(job_id=job_id, user_id="alice", wait_seconds=60)))
    await asyncio.sleep(0.05)
    signals.close()
    job = await asyncio.wait_for(waiting, timeout=2)
    assert job.status is JobStatus.QUEUED
    started = time.monotonic()
    await get_status.execute(JobQuery(job_id=job_id, user_id="alice", wait_seconds=60))
    assert time.monotonic() - started < 1, "a request that comes while stopping does not wait"


async def test_someone_elses_job_is_missing_without_waiting(db: FakeDatabase, job_id: UUID) -> None:
    signals = FakeJobSignals()
    with pytest.raises(JobNotFound):
        await asyncio.wait_for(
            GetJobStatus(FakeJobReader(db), signals).execute(JobQuery(job_id=job_id, user_id="bob", wait_seconds=60)),
            timeout=2,
        )


@pytest.mark.parametrize("seconds", [-1, 60.5, float("nan"), float("inf")])
async def test_a_wait_outside_0_to_60_seconds_is_invalid_input(db: FakeDatabase, job_id: UUID, seconds: float) -> None:
    with pytest.raises(InvalidInput) as exc:
        await GetJobStatus(FakeJobReader(db), FakeJobSignals()).execute(
            JobQuery(job_id=job_id, user_id="alice", wait_seconds=seconds)
        )
    assert [e.field for e in exc.value.errors] == ["wait"]
