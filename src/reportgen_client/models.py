"""What the API answers, as typed, immutable values. Each keeps the body it was read from (`raw`), so a script
can reach a field this client does not know yet, and `--json` prints what the server said."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Cancelled"})


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class JobError:
    code: str
    message: str
    detail: str | None = None
    """The database's own message: present for admins only."""


@dataclass(frozen=True, slots=True)
class Job:
    """A job's status body (`GET /api/v1/jobs/{jobId}`)."""

    job_id: str
    report_id: str
    status: str
    progress: int
    format: str
    parameters: dict[str, Any]
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    error: JobError | None
    status_url: str
    result_url: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        """Succeeded, Failed or Cancelled: the status will not change any more."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Job:
        error = body.get("error")
        return cls(
            job_id=body["jobId"],
            report_id=body["reportId"],
            status=body["status"],
            progress=body["progress"],
            format=body["format"],
            parameters=dict(body["parameters"]),
            attempts=body["attempts"],
            created_at=datetime.fromisoformat(body["createdAt"]),
            started_at=_moment(body.get("startedAt")),
            finished_at=_moment(body.get("finishedAt")),
            expires_at=_moment(body.get("expiresAt")),
            error=None if error is None else JobError(error["code"], error["message"], error.get("detail")),
            status_url=body["statusUrl"],
            result_url=body["resultUrl"],
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class Submitted:
    """The answer to generate (202): the job's id and where to follow it."""

    job_id: str
    status: str
    status_url: str
    result_url: str
    replayed: bool
    """True when the server answered with the job an earlier request with the same Idempotency-Key created."""


@dataclass(frozen=True, slots=True)
class ReportParameter:
    name: str
    type: str
    """`string`, `integer`, `number`, `boolean` or `date`."""
    required: bool
    default: Any


@dataclass(frozen=True, slots=True)
class Report:
    """A report configuration (`GET /api/v1/reports`); `formats[0]` is its default format."""

    id: str
    name: str
    description: str
    parameters: tuple[ReportParameter, ...]
    formats: tuple[str, ...]
    delivery_target: str
    async_enabled: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Report:
        return cls(
            id=body["id"],
            name=body["name"],
            description=body.get("description", ""),
            parameters=tuple(
                ReportParameter(p["name"], p["type"], p.get("required", False), p.get("default"))
                for p in body.get("parameters", [])
            ),
            formats=tuple(body["formats"]),
            delivery_target=body.get("deliveryTarget", "API_RESPONSE"),
            async_enabled=body.get("asyncEnabled", True),
            raw=body,
        )
