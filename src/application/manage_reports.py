"""Report configuration management: the admin's side of the catalogue, and reading it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from application.ports import Clock, IdFactory, UnitOfWorkFactory
from domain.errors import ReportNotFound
from domain.formats import DEFAULT_FORMAT
from domain.reports import API_RESPONSE, Chart, ReportConfiguration, ReportParameter


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportDefinition:
    name: str
    query: str
    description: str = ""
    parameters: tuple[ReportParameter, ...] = ()
    formats: tuple[str, ...] = (DEFAULT_FORMAT,)
    delivery_target: str = API_RESPONSE
    async_enabled: bool = True
    chart: Chart | None = None
    csv_formula_escape: bool = False


class CreateReport:
    """Store a new report configuration; its definition is validated (InvalidReportDefinition)."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, new_id: IdFactory = uuid4) -> None:
        self._uow = uow
        self._clock = clock
        self._new_id = new_id

    async def execute(self, definition: ReportDefinition) -> ReportConfiguration:
        now = self._clock()
        report = _report(self._new_id(), definition, created_at=now, updated_at=now)
        async with self._uow() as uow:
            await uow.reports.add(report)
            await uow.commit()
        return report


class UpdateReport:
    """Replace a report's definition. Jobs already accepted keep the definition they were accepted with."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, report_id: UUID, definition: ReportDefinition) -> ReportConfiguration:
        async with self._uow() as uow:
            current = await uow.reports.get(report_id)
            if current is None:
                raise ReportNotFound(report_id)
            report = _report(report_id, definition, created_at=current.created_at, updated_at=self._clock())
            await uow.reports.update(report)
            await uow.commit()
        return report


class DeleteReport:
    """Retire a report: it can no longer be read or generated; its jobs keep running and keep their results."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self, report_id: UUID) -> None:
        async with self._uow() as uow:
            if not await uow.reports.delete(report_id):
                raise ReportNotFound(report_id)
            await uow.commit()


class GetReport:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self, report_id: UUID) -> ReportConfiguration:
        async with self._uow() as uow:
            report = await uow.reports.get(report_id)
        if report is None:
            raise ReportNotFound(report_id)
        return report


class ListReports:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(self) -> list[ReportConfiguration]:
        async with self._uow() as uow:
            return await uow.reports.list()


def _report(
    report_id: UUID, d: ReportDefinition, *, created_at: datetime | None, updated_at: datetime
) -> ReportConfiguration:
    return ReportConfiguration(
        id=report_id,
        name=d.name,
        query=d.query,
        description=d.description,
        parameters=d.parameters,
        formats=d.formats,
        delivery_target=d.delivery_target,
        async_enabled=d.async_enabled,
        chart=d.chart,
        csv_formula_escape=d.csv_formula_escape,
        created_at=created_at,
        updated_at=updated_at,
    )
