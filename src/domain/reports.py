"""Report configurations: a named, parameterized SQL SELECT and the rules for running it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import TypeAlias
from uuid import UUID

from domain.errors import FieldError, InvalidParameters, InvalidReportDefinition, ReportNotAsyncDeliverable
from domain.formats import DEFAULT_FORMAT, FORMAT_NAMES

ParamValue: TypeAlias = str | int | float | bool | None

API_RESPONSE = "API_RESPONSE"

# The bind-parameter syntax that SQLAlchemy's text() understands: `:name`, but not `::cast` and not `\:`.
BIND_PARAM = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
PARAMETER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
DELIVERY_TARGET_PATTERN = r"^[A-Z][A-Z0-9_]{0,39}$"
_IDENTIFIER = re.compile(PARAMETER_NAME_PATTERN)
_DELIVERY_TARGET = re.compile(DELIVERY_TARGET_PATTERN)
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000
_LEADING_COMMENTS = re.compile(r"^(\s+|--[^\n]*\n?|/\*.*?\*/)*", re.DOTALL)
MAX_QUERY_LENGTH = 100_000


class ParameterType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


class ChartType(StrEnum):
    BAR = "bar"
    LINE = "line"


MAX_CHART_SERIES = 8


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart drawn above the table of a PDF: `x` names the column of the categories (bar) or of the x values
    (line), `y` the columns of the series. The names are checked against the query's columns when a job runs: a
    query's columns are known only then."""

    type: ChartType
    x: str
    y: tuple[str, ...]

    def missing_columns(self, columns: Sequence[str]) -> list[str]:
        """The columns this chart names that are not among `columns`, in the chart's order."""
        return [name for name in (self.x, *self.y) if name not in columns]


@dataclass(frozen=True, slots=True)
class ReportParameter:
    name: str
    type: ParameterType
    required: bool = False
    default: ParamValue = None

    def coerce(self, value: object) -> ParamValue:
        """The value as it is stored and bound; raises ValueError with a client-facing message."""
        return coerce_parameter(self.type, value)


@dataclass(frozen=True, slots=True)
class Binding:
    """One value bound to a `:name` placeholder of a report query, with the type it is bound as."""

    name: str
    type: ParameterType
    value: ParamValue


@dataclass(frozen=True, slots=True)
class ResolvedRequest:
    """What a generate request resolves to against a report: the output format and every parameter's value."""

    format: str
    parameters: dict[str, ParamValue]
    parameter_types: dict[str, ParameterType]


MAX_STRING_PARAMETER_LENGTH = 10_000
INTEGER_RANGE = (-(2**63), 2**63 - 1)
"""What a database binds as an integer (BIGINT)."""


def coerce_parameter(kind: ParameterType, value: object) -> ParamValue:
    """`value` as a parameter of type `kind`: within what the database can bind (a 64-bit integer, a finite double,
    a string of at most MAX_STRING_PARAMETER_LENGTH characters); raises ValueError with a client-facing message."""
    if value is None:
        return None
    if kind is ParameterType.STRING and isinstance(value, str):
        if len(value) > MAX_STRING_PARAMETER_LENGTH:
            raise ValueError(f"must be at most {MAX_STRING_PARAMETER_LENGTH} characters")
        return value
    if kind is ParameterType.INTEGER and isinstance(value, int) and not isinstance(value, bool):
        if not INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1]:
            raise ValueError("must be a 64-bit integer (-2^63 to 2^63-1)")
        return value
    if kind is ParameterType.NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
        return _finite_number(value)
    if kind is ParameterType.BOOLEAN and isinstance(value, bool):
        return value
    if kind is ParameterType.DATE and isinstance(value, str):
        return _parse_date(value)
    raise ValueError(f"must be of type {kind.value}")


def _finite_number(value: int | float) -> int | float:
    try:
        finite = math.isfinite(float(value))
    except OverflowError:  # an integer beyond a double's range
        finite = False
    if not finite:
        raise ValueError("must be a finite number within a double's range")
    return value


def _parse_date(value: str) -> str:
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise ValueError("must be a date written YYYY-MM-DD")


@dataclass(eq=False, slots=True)
class ReportConfiguration:
    """A report: identity by `id`; only `API_RESPONSE` reports with `async_enabled` run through this API."""

    id: UUID
    name: str
    query: str
    description: str = ""
    parameters: tuple[ReportParameter, ...] = ()
    formats: tuple[str, ...] = (DEFAULT_FORMAT,)
    delivery_target: str = API_RESPONSE
    async_enabled: bool = True
    chart: Chart | None = None
    """Drawn above the table of a PDF result; other formats ignore it."""
    csv_formula_escape: bool = False
    """Whether a CSV result writes text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or
    carriage return first) with a `'` before it. Off by default, so that CSV stays byte for byte what the query
    returned."""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = field(default=None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReportConfiguration) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __post_init__(self) -> None:
        validate_definition(self)

    def ensure_async_api_delivery(self) -> None:
        """Only reports delivered by API response, with asynchronous mode on, follow this flow."""
        if self.delivery_target != API_RESPONSE:
            raise ReportNotAsyncDeliverable(self.id, f"its delivery target is {self.delivery_target}")
        if not self.async_enabled:
            raise ReportNotAsyncDeliverable(self.id, "asynchronous mode is disabled")

    def resolve(self, parameters: Mapping[str, object], output_format: str | None) -> ResolvedRequest:
        """Check a request against this report and apply defaults; raises InvalidParameters naming each field."""
        errors: list[FieldError] = []
        fmt = output_format or self.formats[0]
        if fmt not in self.formats:
            errors.append(FieldError("format", f"must be one of {', '.join(self.formats)}"))
        declared = {p.name: p for p in self.parameters}
        errors.extend(
            FieldError(f"parameters.{name}", "is not a parameter of this report")
            for name in parameters
            if name not in declared
        )
        values: dict[str, ParamValue] = {}
        for p in self.parameters:
            try:
                values[p.name] = self._value_of(p, parameters)
            except ValueError as exc:
                errors.append(FieldError(f"parameters.{p.name}", str(exc)))
        if errors:
            raise InvalidParameters(errors)
        return ResolvedRequest(fmt, values, {p.name: p.type for p in self.parameters})

    @staticmethod
    def _value_of(p: ReportParameter, given: Mapping[str, object]) -> ParamValue:
        if p.name in given and given[p.name] is not None:
            return p.coerce(given[p.name])
        if p.default is not None:
            return p.default
        if p.required:
            raise ValueError("is required")
        return None

    def with_changes(self, **changes: object) -> ReportConfiguration:
        return replace(self, **changes)  # type: ignore[arg-type]


def validate_definition(report: ReportConfiguration) -> None:
    """Everything checkable without a database: one SELECT, declared binds, sane names, types and formats."""
    errors = [
        *_name_errors(report),
        *_query_errors(report),
        *_format_errors(report),
        *_parameter_errors(report),
        *_chart_errors(report.chart),
    ]
    if errors:
        raise InvalidReportDefinition(errors)


def _name_errors(report: ReportConfiguration) -> list[FieldError]:
    errors = []
    if not report.name.strip() or len(report.name) > MAX_NAME_LENGTH:
        errors.append(FieldError("name", f"must be 1 to {MAX_NAME_LENGTH} characters"))
    if len(report.description) > MAX_DESCRIPTION_LENGTH:
        errors.append(FieldError("description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters"))
    if not _DELIVERY_TARGET.match(report.delivery_target):
        errors.append(FieldError("deliveryTarget", "must be an upper-case name such as API_RESPONSE"))
    return errors


def _query_errors(report: ReportConfiguration) -> list[FieldError]:
    query = report.query
    if len(query) > MAX_QUERY_LENGTH:
        return [FieldError("query", f"must be at most {MAX_QUERY_LENGTH} characters")]
    body = _LEADING_COMMENTS.sub("", query, count=1)
    first_word = body.split(None, 1)[0].upper() if body.strip() else ""
    if first_word not in ("SELECT", "WITH", "VALUES", "(SELECT"):
        return [FieldError("query", "must be a single SELECT statement")]
    if ";" in query.strip().rstrip(";"):
        return [FieldError("query", "must be a single statement (no ';' inside)")]
    declared = {p.name for p in report.parameters}
    undeclared = sorted(set(BIND_PARAM.findall(query)) - declared)
    return [FieldError("query", f"uses undeclared parameter :{name}") for name in undeclared]


def _format_errors(report: ReportConfiguration) -> list[FieldError]:
    if not report.formats:
        return [FieldError("formats", "must list at least one format")]
    bad = [f for f in report.formats if f not in FORMAT_NAMES]
    if bad:
        return [FieldError("formats", f"unsupported format {bad[0]!r}; supported: {', '.join(FORMAT_NAMES)}")]
    if len(set(report.formats)) != len(report.formats):
        return [FieldError("formats", "must not repeat a format")]
    return []


def _chart_errors(chart: Chart | None) -> list[FieldError]:
    if chart is None:
        return []
    errors = []
    if not chart.x.strip():
        errors.append(FieldError("chart.x", "must name a column of the query"))
    if not chart.y or len(chart.y) > MAX_CHART_SERIES:
        errors.append(FieldError("chart.y", f"must name 1 to {MAX_CHART_SERIES} columns of the query"))
    elif any(not name.strip() for name in chart.y):
        errors.append(FieldError("chart.y", "must name columns of the query"))
    elif len(set(chart.y)) != len(chart.y):
        errors.append(FieldError("chart.y", "must not repeat a column"))
    return errors


def _parameter_errors(report: ReportConfiguration) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, p in enumerate(report.parameters):
        where = f"parameters[{i}]"
        if not _IDENTIFIER.match(p.name):
            errors.append(FieldError(f"{where}.name", "must be an identifier (letters, digits, _)"))
        elif p.name in seen:
            errors.append(FieldError(f"{where}.name", f"repeats parameter {p.name}"))
        seen.add(p.name)
        try:
            p.coerce(p.default)
        except ValueError as exc:
            errors.append(FieldError(f"{where}.default", str(exc)))
    return errors


def bindings(parameters: Mapping[str, ParamValue], types: Mapping[str, ParameterType], query: str) -> Sequence[Binding]:
    """The values to bind for the placeholders the query actually uses."""
    used = set(BIND_PARAM.findall(query))
    return [Binding(name, types[name], parameters.get(name)) for name in types if name in used]
