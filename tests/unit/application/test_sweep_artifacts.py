from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

from application.sweep_artifacts import SweepExpiredArtifacts
from domain.idempotency import KEY_LIFETIME, IdempotencyRecord
from domain.jobs import ArtifactRef, JobStatus
from tests.fakes import FakeArtifactStore, FakeClock, FakeDatabase, FakeUnitOfWork


async def test_expired_artifacts_and_keys_are_deleted_and_live_ones_kept(
    uow: Callable[[], FakeUnitOfWork], db: FakeDatabase, clock: FakeClock, job_id: UUID
) -> None:
    store = FakeArtifactStore()
    store.files = {"old": b"1", "live": b"2"}
    job = db.jobs[job_id]
    job.start(clock(), clock.now)
    job.succeed(clock(), ArtifactRef("old", 1, "a"), expires_at=clock.now + timedelta(hours=1))
    db.idempotency["alice", "k"] = IdempotencyRecord("alice", "k", "f", job_id, clock.now)
    sweep = SweepExpiredArtifacts(uow, store, clock)

    assert await sweep.execute() == 0
    clock.advance(KEY_LIFETIME.total_seconds() + 1)
    assert await sweep.execute() == 1

    assert store.files == {"live": b"2"}
    assert (db.jobs[job_id].status, db.jobs[job_id].artifact) == (JobStatus.SUCCEEDED, None)
    assert db.idempotency == {}
    assert await sweep.execute() == 0
