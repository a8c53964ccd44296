"""Per-user limits of active jobs, for admins."""

from __future__ import annotations

from inspect import getdoc

from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api.auth import admin_only
from api.errors import problem_responses
from api.schemas import JobLimitIn, JobLimitOut, JsonBody, UserId
from api.services import ApiServices
from application.job_limits import GetJobLimit, JobLimit, SetJobLimit


def job_limit_out(limit: JobLimit) -> JobLimitOut:
    owner = limit.owner
    return JobLimitOut(
        user_id=owner.owner_id,
        max_active_jobs=owner.max_active_jobs,
        default_max_active_jobs=limit.default_limit,
        active_jobs=owner.active_jobs,
    )


class UsersController(Controller):
    path = "/api/v1/users/{userId:str}/job-limit"
    tags = ("users",)
    guards = [admin_only]  # noqa: RUF012 - Litestar's own attribute

    @get(
        summary="Read a user's limit of active jobs",
        description=getdoc(GetJobLimit),
        responses=problem_responses(400, 401, 403, 503),
    )
    async def read(self, user_id: UserId, services: NamedDependency[ApiServices]) -> JobLimitOut:
        return job_limit_out(await services.use_cases.get_job_limit.execute(user_id))

    @put(
        dto=JsonBody[JobLimitIn],
        return_dto=None,
        summary="Set a user's limit of active jobs",
        description=getdoc(SetJobLimit),
        responses=problem_responses(400, 401, 403, 413, 422, 503),
    )
    async def replace(
        self, user_id: UserId, data: JSONBody[JobLimitIn], services: NamedDependency[ApiServices]
    ) -> JobLimitOut:
        return job_limit_out(await services.use_cases.set_job_limit.execute(user_id, data.max_active_jobs))
