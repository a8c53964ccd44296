from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from application.errors import ArtifactMissing
from application.job_queries import GetJobResult, GetJobStatus, JobQuery
from domain.errors import JobNotFound, ResultExpired, ResultNotReady
from domain.jobs import ArtifactRef, JobStatus
from tests.fakes import FakeArtifactStore, FakeClock, FakeDatabase, FakeJobReader


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
