"""Per-user limits of active jobs: what an admin reads and sets for a user (a service account that needs many jobs
in flight, or a user to hold back)."""

from __future__ import annotations

from dataclasses import dataclass

from application.ports import UnitOfWorkFactory
from domain.errors import FieldError, InvalidInput
from domain.jobs import JobOwner

MAX_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class JobLimit:
    owner: JobOwner
    default_limit: int
    """The service's default (`REPORTGEN_MAX_ACTIVE_JOBS_PER_USER`), which applies while the owner has no limit of
    their own; 0: no limit."""


class GetJobLimit:
    """A user's Queued and Running jobs, their own limit (null: the default applies) and the default."""

    def __init__(self, uow: UnitOfWorkFactory, *, default_limit: int) -> None:
        self._uow = uow
        self._default_limit = default_limit

    async def execute(self, user_id: str) -> JobLimit:
        async with self._uow() as uow:
            return JobLimit(await uow.owners.get(user_id), self._default_limit)


class SetJobLimit:
    """Give a user a limit of active jobs of their own (0: no limit), or null to return them to the default. Takes
    effect at the user's next generate request; jobs already accepted are not touched, even above a lower limit."""

    def __init__(self, uow: UnitOfWorkFactory, *, default_limit: int) -> None:
        self._uow = uow
        self._default_limit = default_limit

    async def execute(self, user_id: str, max_active_jobs: int | None) -> JobLimit:
        if max_active_jobs is not None and not 0 <= max_active_jobs <= MAX_LIMIT:
            message = f"must be null (the default) or an integer from 0 (no limit) to {MAX_LIMIT}"
            raise InvalidInput([FieldError("maxActiveJobs", message)])
        async with self._uow() as uow:
            owner = await uow.owners.set_limit(user_id, max_active_jobs)
            await uow.commit()
        return JobLimit(owner, self._default_limit)
