from collections.abc import Callable
from uuid import UUID, uuid4

import pytest

from application.initiate_report_job import InitiateAsynchronousReportJob, InitiateReportJob
from application.job_admission import UnitOfWorkAdmission
from domain.reports import ParameterType, ReportConfiguration, ReportParameter
from tests.fakes import FakeClock, FakeDatabase, FakeJobQueue, FakeUnitOfWork


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def queue(db: FakeDatabase) -> FakeJobQueue:
    return FakeJobQueue(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def uow(db: FakeDatabase) -> Callable[[], FakeUnitOfWork]:
    return lambda: FakeUnitOfWork(db)


@pytest.fixture
def report(db: FakeDatabase) -> ReportConfiguration:
    report = ReportConfiguration(
        id=uuid4(),
        name="Sales",
        query="SELECT :region AS region",
        parameters=(ReportParameter("region", ParameterType.STRING, default="EU"),),
        formats=("csv", "json"),
    )
    db.reports[report.id] = report
    return report


@pytest.fixture
async def job_id(
    uow: Callable[[], FakeUnitOfWork], queue: FakeJobQueue, clock: FakeClock, report: ReportConfiguration
) -> UUID:
    """A job of `report`, accepted for user alice and still Queued."""
    initiate = InitiateAsynchronousReportJob(uow, UnitOfWorkAdmission(uow), queue, clock)
    return (await initiate.execute(InitiateReportJob(report_id=report.id, user_id="alice"))).job_id
