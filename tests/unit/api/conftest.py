"""The HTTP layer over the real use cases, wired on the fakes of tests/fakes.py, through Litestar's test client."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from jose import jwt
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry

from api.app import ApiDependencies, build_app
from api.auth import JwtSettings
from api.services import UseCases
from application.cancel_job import CancelJob
from application.initiate_report_job import InitiateAsynchronousReportJob
from application.job_admission import UnitOfWorkAdmission
from application.job_events import Subscribers, publishing
from application.job_limits import GetJobLimit, SetJobLimit
from application.job_queries import GetJobResult, GetJobStatus, ListJobs
from application.manage_reports import CreateReport, DeleteReport, GetReport, ListReports, UpdateReport
from application.ports import JobTransition
from domain.jobs import ArtifactRef, JobExecutionLog
from domain.reports import ParameterType, ReportConfiguration, ReportParameter
from tests.fakes import (
    FakeArtifactStore,
    FakeClock,
    FakeDatabase,
    FakeJobQueue,
    FakeJobReader,
    FakeJobSignals,
    FakeUnitOfWork,
)

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
ISSUER = "https://issuer.test"
AUDIENCE = "reportgen-api"
POLL_AFTER_SECONDS = 3
LEASE = timedelta(seconds=30)
RESULT_TTL = timedelta(days=1)

Client = AsyncTestClient[Litestar]
STATUS_FIELDS = {
    "jobId", "reportId", "status", "progress", "format", "parameters", "attempts",
    "createdAt", "startedAt", "finishedAt", "expiresAt", "error", "statusUrl", "resultUrl",
}  # fmt: skip


@dataclass
class Backend:
    """The fakes behind the use cases, shared by a test and the app it drives."""

    db: FakeDatabase = field(default_factory=FakeDatabase)
    artifacts: FakeArtifactStore = field(default_factory=FakeArtifactStore)
    clock: FakeClock = field(default_factory=FakeClock)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    queue: FakeJobQueue = field(init=False)
    signals: FakeJobSignals = field(default_factory=FakeJobSignals)

    def __post_init__(self) -> None:
        self.queue = FakeJobQueue(self.db)

    async def announce(self, transitions: Sequence[JobTransition]) -> None:
        """What the composition root subscribes in embedded mode: a job finished, its waiters look again."""
        for transition in transitions:
            if transition.change.new.is_terminal:
                self.signals.notify(transition.change.job_id)

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.db)

    async def readiness(self) -> Mapping[str, bool]:
        return {"database": not self.db.unavailable, "queue": not self.queue.fail}

    def add_report(self, **changes: Any) -> ReportConfiguration:
        report = ReportConfiguration(
            id=uuid4(),
            name="Sales by region",
            query="SELECT region, total FROM sales WHERE region = :region AND day >= :since",
            parameters=(
                ReportParameter("region", ParameterType.STRING, required=True),
                ReportParameter("since", ParameterType.DATE, default="2026-01-01"),
            ),
            formats=("csv", "json"),
            created_at=self.clock(),
            updated_at=self.clock(),
        )
        report = replace(report, **changes)
        self.db.reports[report.id] = report
        return report

    def add_job(self, report: ReportConfiguration, owner: str, output_format: str = "csv") -> JobExecutionLog:
        job = JobExecutionLog.queue(
            job_id=uuid4(),
            report=report,
            request=report.resolve({"region": "EU"}, output_format),
            owner_id=owner,
            now=self.clock(),
        )
        self.db.jobs[job.id] = job
        return job

    def start(self, job: JobExecutionLog) -> None:
        job.start(self.clock(), lease_until=self.clock() + LEASE)

    def succeed(self, job: JobExecutionLog, content: bytes) -> ArtifactRef:
        """Run the job to success now; its result expires after RESULT_TTL."""
        self.start(job)
        key = job.artifact_key()
        self.artifacts.files[key] = content
        artifact = ArtifactRef(key, len(content), hashlib.sha256(content).hexdigest())
        job.succeed(self.clock(), artifact, expires_at=self.clock() + RESULT_TTL)
        return artifact


DEFAULT_JOB_LIMIT = 10


def dependencies(backend: Backend, auth: JwtSettings, **overrides: Any) -> ApiDependencies:
    uow, reader = publishing(backend.uow, Subscribers(backend.announce)), FakeJobReader(backend.db)
    deps = ApiDependencies(
        use_cases=UseCases(
            initiate=InitiateAsynchronousReportJob(uow, UnitOfWorkAdmission(uow), backend.queue, backend.clock),
            get_status=GetJobStatus(reader, backend.signals),
            list_jobs=ListJobs(reader),
            get_result=GetJobResult(reader, backend.artifacts, backend.clock),
            cancel=CancelJob(uow, backend.queue, backend.clock),
            create_report=CreateReport(uow, backend.clock),
            update_report=UpdateReport(uow, backend.clock),
            delete_report=DeleteReport(uow),
            get_report=GetReport(uow),
            list_reports=ListReports(uow),
            get_job_limit=GetJobLimit(uow, default_limit=DEFAULT_JOB_LIMIT),
            set_job_limit=SetJobLimit(uow, default_limit=DEFAULT_JOB_LIMIT),
        ),
        auth=auth,
        readiness=backend.readiness,
        registry=backend.registry,
        lifespan=(),
        poll_after_seconds=POLL_AFTER_SECONDS,
        max_body_bytes=64 * 1024,
    )
    use_case_overrides = {name: overrides.pop(name) for name in list(overrides) if hasattr(deps.use_cases, name)}
    return replace(deps, use_cases=replace(deps.use_cases, **use_case_overrides), **overrides)


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def jwt_settings() -> JwtSettings:
    return JwtSettings(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
async def client(backend: Backend, jwt_settings: JwtSettings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=build_app(dependencies(backend, jwt_settings))) as test_client:
        yield test_client


def claims(sub: str = "alice", roles: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "roles": list(roles), "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **extra}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs256(payload: Mapping[str, Any]) -> str:
    return jwt.encode(dict(payload), SECRET, algorithm="HS256")


@pytest.fixture
def alice() -> dict[str, str]:
    """A user without roles."""
    return bearer(hs256(claims("alice")))


@pytest.fixture
def bob() -> dict[str, str]:
    return bearer(hs256(claims("bob")))


@pytest.fixture
def admin() -> dict[str, str]:
    return bearer(hs256(claims("root", roles=["admin"])))


NOT_A_UUID = "not-a-uuid"
UNKNOWN_ID = UUID("00000000-0000-4000-8000-000000000000")
