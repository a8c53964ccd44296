from collections.abc import Callable
from uuid import uuid4

import pytest

from application.manage_reports import (
    CreateReport,
    DeleteReport,
    GetReport,
    ListReports,
    ReportDefinition,
    UpdateReport,
)
from domain.errors import InvalidReportDefinition, ReportNotFound
from domain.reports import ReportConfiguration
from tests.fakes import FakeClock, FakeDatabase, FakeUnitOfWork

DEFINITION = ReportDefinition(name="Daily", query="SELECT 1 AS one", formats=("json", "csv"))


async def test_created_report_is_stored_with_timestamps(
    uow: Callable[[], FakeUnitOfWork], clock: FakeClock, db: FakeDatabase
) -> None:
    report = await CreateReport(uow, clock).execute(DEFINITION)
    assert db.reports[report.id].formats == ("json", "csv")
    assert report.created_at == report.updated_at == clock()


async def test_invalid_definition_is_not_stored(
    uow: Callable[[], FakeUnitOfWork], clock: FakeClock, db: FakeDatabase
) -> None:
    with pytest.raises(InvalidReportDefinition):
        await CreateReport(uow, clock).execute(ReportDefinition(name="x", query="UPDATE t SET a = 1"))
    assert db.reports == {}


async def test_update_replaces_the_definition_and_keeps_creation_time(
    uow: Callable[[], FakeUnitOfWork], clock: FakeClock, report: ReportConfiguration
) -> None:
    clock.advance(60)
    updated = await UpdateReport(uow, clock).execute(report.id, DEFINITION)
    assert (updated.name, updated.created_at, updated.updated_at) == ("Daily", report.created_at, clock())
    assert (await GetReport(uow).execute(report.id)).query == "SELECT 1 AS one"


async def test_deleted_report_is_gone_from_reads(
    uow: Callable[[], FakeUnitOfWork], report: ReportConfiguration
) -> None:
    await DeleteReport(uow).execute(report.id)
    with pytest.raises(ReportNotFound):
        await GetReport(uow).execute(report.id)
    assert await ListReports(uow).execute() == []
    with pytest.raises(ReportNotFound):
        await DeleteReport(uow).execute(report.id)


async def test_update_of_unknown_report_is_not_found(uow: Callable[[], FakeUnitOfWork], clock: FakeClock) -> None:
    with pytest.raises(ReportNotFound):
        await UpdateReport(uow, clock).execute(uuid4(), DEFINITION)
