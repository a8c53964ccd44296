"""Wire types: msgspec Structs with camelCase keys, path parameter types, UTC times and strict body decoding.

Request bodies are decoded from raw bytes by `JsonBody` (a Litestar DTO), so that malformed syntax and
invalid content stay apart: bytes that are not JSON -> 400; JSON of the wrong shape (unknown or missing
keys, wrong types) -> `InvalidInput`, 422, naming the field. Decoding is strict: `"true"` is not a boolean.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeAlias, TypeVar, overload
from uuid import UUID

import msgspec
from litestar.dto import MsgspecDTO
from litestar.exceptions import ClientException
from litestar.openapi.spec import Reference, Schema
from litestar.params import HeaderParameter, KwargDefinition, PathParameter
from litestar.typing import FieldDefinition
from msgspec import UNSET, UnsetType

from application.job_limits import MAX_LIMIT
from application.manage_reports import ReportDefinition
from domain.callbacks import MAX_CALLBACK_URL_LENGTH, CallbackStatus
from domain.errors import FieldError, InvalidInput
from domain.formats import DEFAULT_FORMAT, FORMAT_NAMES
from domain.idempotency import MAX_KEY_LENGTH
from domain.jobs import JobStatus
from domain.reports import (
    API_RESPONSE,
    DELIVERY_TARGET_PATTERN,
    MAX_CHART_SERIES,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    MAX_QUERY_LENGTH,
    PARAMETER_NAME_PATTERN,
    Chart,
    ChartType,
    ParameterType,
    ParamValue,
    ReportParameter,
)
from domain.text import MAX_USER_ID_LENGTH, USER_ID_PATTERN, text_problem

# Path parameters keep the contract's camelCase names; a value that is not a UUID is a 400 naming them.
ReportId: TypeAlias = Annotated[UUID, PathParameter(name="reportId", description="The report's id.")]
JobId: TypeAlias = Annotated[UUID, PathParameter(name="jobId", description="The job's id.")]
UserId: TypeAlias = Annotated[
    str,
    PathParameter(
        name="userId",
        description="A user id: a token's `sub`.",
        min_length=1,
        max_length=MAX_USER_ID_LENGTH,
        pattern=USER_ID_PATTERN,
    ),
]

# Format names as the domain's registry lists them, for the OpenAPI document. They stay plain strings on the
# wire: the domain refuses a name outside its registry, or outside the report's formats, naming the field (422).
FormatName: TypeAlias = Annotated[str, KwargDefinition(schema_extra={"enum": list(FORMAT_NAMES)})]
OptionalFormatName: TypeAlias = Annotated[str | None, KwargDefinition(schema_extra={"enum": [*FORMAT_NAMES, None]})]

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# Opaque to the server and compared exactly; anything other than 1-255 printable ASCII characters is a 400.
IdempotencyKey: TypeAlias = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_KEY_HEADER,
        description="Makes a generate request safe to retry: the same key from the same user with the same "
        "request answers with the first job (kept 24 h); with a different request, 422.",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[ -~]+$",
    ),
]


class WireStruct(msgspec.Struct, rename="camel"):
    """Base of every JSON body: snake_case in Python, camelCase on the wire."""


class RequestStruct(WireStruct, forbid_unknown_fields=True):
    """A request body: unknown keys are an error, not silently dropped."""


def request_structs() -> list[type[RequestStruct]]:
    """Every request body type (for the OpenAPI document: each refuses unknown keys)."""
    found: list[type[RequestStruct]] = []
    pending = [RequestStruct]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


# What the domain enforces of a report (domain.reports), stated in the OpenAPI document: documentation only, the
# domain's validation answers each with a 422 naming the field.
ParameterName: TypeAlias = Annotated[str, KwargDefinition(pattern=PARAMETER_NAME_PATTERN)]
ReportName: TypeAlias = Annotated[str, KwargDefinition(min_length=1, max_length=MAX_NAME_LENGTH)]
Description: TypeAlias = Annotated[str, KwargDefinition(max_length=MAX_DESCRIPTION_LENGTH)]
Query: TypeAlias = Annotated[str, KwargDefinition(min_length=1, max_length=MAX_QUERY_LENGTH)]
DeliveryTarget: TypeAlias = Annotated[str, KwargDefinition(pattern=DELIVERY_TARGET_PATTERN)]
Formats: TypeAlias = Annotated[list[FormatName], KwargDefinition(min_items=1, schema_extra={"uniqueItems": True})]
OptionalCallbackUrl: TypeAlias = Annotated[
    str | None, KwargDefinition(max_length=MAX_CALLBACK_URL_LENGTH, schema_extra={"format": "uri"})
]
JobLimit: TypeAlias = Annotated[int | None, KwargDefinition(le=MAX_LIMIT, schema_extra={"minimum": 0})]


class ParameterIn(RequestStruct):
    name: ParameterName
    type: ParameterType
    required: bool = False
    default: ParamValue = None


ChartColumn: TypeAlias = Annotated[str, KwargDefinition(min_length=1)]
ChartSeries: TypeAlias = Annotated[
    list[ChartColumn], KwargDefinition(min_items=1, max_items=MAX_CHART_SERIES, schema_extra={"uniqueItems": True})
]


class ChartIn(RequestStruct):
    """A chart drawn above a PDF's table: `x` names the column of the categories (bar) or x values (line), `y`
    the columns of the series; the names are checked against the query's columns when a job runs (a job whose
    query lacks one fails with INVALID_CHART)."""

    type: ChartType
    x: ChartColumn
    y: ChartSeries

    def to_chart(self) -> Chart:
        return Chart(self.type, self.x, tuple(self.y))


class ChartOut(WireStruct):
    type: ChartType
    x: str
    y: list[str]


def chart_out(chart: Chart | None) -> ChartOut | None:
    return None if chart is None else ChartOut(type=chart.type, x=chart.x, y=list(chart.y))


class ReportIn(RequestStruct):
    """A report configuration as an admin writes it (POST creates, PUT replaces)."""

    name: ReportName
    query: Query
    description: Description = ""
    parameters: list[ParameterIn] = msgspec.field(default_factory=list)
    formats: Formats = msgspec.field(default_factory=lambda: [DEFAULT_FORMAT])
    delivery_target: DeliveryTarget = API_RESPONSE
    async_enabled: bool = True
    chart: ChartIn | None = None
    csv_formula_escape: bool = False
    """Write text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) with a
    `'` before it in CSV results. Off by default: CSV stays byte for byte what the query returned."""

    def to_definition(self) -> ReportDefinition:
        parameters = tuple(ReportParameter(p.name, p.type, p.required, p.default) for p in self.parameters)
        return ReportDefinition(
            name=self.name,
            query=self.query,
            description=self.description,
            parameters=parameters,
            formats=tuple(self.formats),
            delivery_target=self.delivery_target,
            async_enabled=self.async_enabled,
            chart=None if self.chart is None else self.chart.to_chart(),
            csv_formula_escape=self.csv_formula_escape,
        )


class GenerateIn(RequestStruct):
    """Optional body of a generate request; the report's first format is the default."""

    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    """Values by parameter name; their types are checked against the report's parameter definitions."""
    format: OptionalFormatName = None
    callback_url: OptionalCallbackUrl = None
    """Where to POST a signed webhook when the job ends: `https`, or `http` to a host the operator allowed
    (`REPORTGEN_WEBHOOK_ALLOWED_HOSTS`); see docs/api.md, Webhooks."""


class ParameterOut(WireStruct):
    name: str
    type: ParameterType
    required: bool
    default: ParamValue


class ReportOut(WireStruct, kw_only=True):
    """A stored report. `query` is present for admins only (see `report_out`)."""

    id: UUID
    name: str
    description: str
    query: str | UnsetType = UNSET
    parameters: list[ParameterOut]
    formats: list[FormatName]
    delivery_target: str
    async_enabled: bool
    chart: ChartOut | None
    csv_formula_escape: bool
    created_at: datetime | None
    updated_at: datetime | None


class JobAccepted(WireStruct):
    job_id: UUID
    status: JobStatus
    status_url: str
    result_url: str


class JobErrorOut(WireStruct):
    """Why a job failed. `detail`, the database's own message, is present for admins only (see `job_status_out`)."""

    code: str
    message: str
    detail: str | UnsetType = UNSET


class CallbackOut(WireStruct):
    """How the job's webhook went: `waiting` (the job has not ended), `pending` (due, or to be retried),
    `delivered`, `gone` (the receiver answered 410) or `failed` (no retry left)."""

    status: CallbackStatus
    attempts: int
    last_error: str | None


class JobStatusOut(WireStruct):
    job_id: UUID
    report_id: UUID
    status: JobStatus
    progress: int
    format: FormatName
    parameters: dict[str, ParamValue]
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    """When a Succeeded job's result is deleted under the retention policy; null otherwise."""
    error: JobErrorOut | None
    status_url: str
    result_url: str
    callback: CallbackOut | UnsetType = UNSET
    """Present when the job was requested with a `callbackUrl`."""


class JobListOut(WireStruct):
    """A page of jobs, newest first. `nextCursor` (also in the `Link: <...>; rel="next"` header) fetches the next
    page with the same filters; null on the last page."""

    items: list[JobStatusOut]
    next_cursor: str | None


class FieldErrorOut(WireStruct):
    field: str
    message: str


class Problem(WireStruct, omit_defaults=True):
    """An RFC 9457 problem; the extensions appear only where they apply."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str
    errors: list[FieldErrorOut] | UnsetType = UNSET
    job_status: str | UnsetType = UNSET
    checks: dict[str, bool] | UnsetType = UNSET


class Health(WireStruct):
    status: str
    checks: dict[str, bool] = msgspec.field(default_factory=dict)


@overload
def utc(moment: datetime) -> datetime: ...
@overload
def utc(moment: None) -> None: ...
def utc(moment: datetime | None) -> datetime | None:
    """A time as the wire shows it: UTC, hence written with `Z`; a naive time is taken to be UTC already."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


T = TypeVar("T")
_NAMED_FIELD = re.compile(r"field `([^`]+)`")


def _field_error(exc: msgspec.ValidationError) -> FieldError:
    """Turn msgspec's "Expected `int`, got `str` - at `$.parameters[0].default`" into a named field."""
    message, _, where = str(exc).partition(" - at `$")
    path = where.rstrip("`").lstrip(".")
    if named := _NAMED_FIELD.search(message):
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return FieldError(path or "body", message)


MAX_BODY_DEPTH = 32
"""How deep a request body's arrays and objects may nest; a deeper body is a 400 (none of ours needs more than 4)."""


def decode_json_body(raw: bytes, model: type[T]) -> T:
    """The body as `model`: not JSON, or nested deeper than MAX_BODY_DEPTH -> 400; the wrong shape, or a string
    the service cannot store (`domain.text`) -> InvalidInput naming the field."""
    try:
        body = msgspec.json.decode(raw, type=model, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidInput([_field_error(exc)]) from None
    except msgspec.DecodeError as exc:
        raise ClientException(f"The request body is not valid JSON: {exc}") from None
    except RecursionError:  # the decoder's own bound, far deeper than ours
        raise _too_deep() from None
    errors = _text_errors(body, "", 0)
    if errors:
        raise InvalidInput(errors)
    return body


def _text_errors(value: object, path: str, depth: int) -> list[FieldError]:
    """Every string in a decoded body that breaks `domain.text`'s rule, named by its wire path."""
    if isinstance(value, str):
        problem = text_problem(value)
        return [FieldError(path or "body", problem)] if problem else []
    if depth == MAX_BODY_DEPTH:
        if isinstance(value, msgspec.Struct | dict | list):
            raise _too_deep()
        return []
    items: list[tuple[str, object]]
    if isinstance(value, msgspec.Struct):
        names = zip(value.__struct_fields__, value.__struct_encode_fields__, strict=True)
        items = [(f"{path}.{wire}" if path else wire, getattr(value, name)) for name, wire in names]
    elif isinstance(value, dict):
        items = [(f"{path}.{key}", item) for key, item in value.items()]
        items += [(f"{path} (a key)", key) for key in value]
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        return []
    return [error for where, item in items for error in _text_errors(item, where, depth + 1)]


def _too_deep() -> ClientException:
    return ClientException(f"The request body nests arrays and objects deeper than {MAX_BODY_DEPTH} levels.")


S = TypeVar("S", bound=msgspec.Struct)


class JsonBody(MsgspecDTO[S], Generic[S]):
    """Decodes a handler's `data` with `decode_json_body`; the OpenAPI schema is the Struct itself."""

    def decode_bytes(self, value: bytes) -> S:
        return decode_json_body(value, self.model_type)

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        schema: Reference | Schema = schema_creator.for_field_definition(
            FieldDefinition.from_annotation(cls.model_type)
        )
        return schema


class JobLimitIn(RequestStruct):
    """A user's own limit of Queued + Running jobs: 0 means no limit, null returns the user to the default."""

    max_active_jobs: JobLimit


class JobLimitOut(WireStruct):
    user_id: str
    max_active_jobs: int | None
    """The user's own limit (0: no limit), or null when the default applies."""
    default_max_active_jobs: int
    """`REPORTGEN_MAX_ACTIVE_JOBS_PER_USER` (0: no limit)."""
    active_jobs: int
    """The user's jobs Queued or Running now."""
