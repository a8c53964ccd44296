"""Imperative mapping: table rows to entities and back, written out by hand (no ORM on these hot paths).

A row is anything that maps column names to values: SQLAlchemy's RowMapping, or an asyncpg Record."""

from __future__ import annotations

from typing import Any, Protocol

from domain.callbacks import Callback, CallbackStatus
from domain.idempotency import IdempotencyRecord
from domain.jobs import ArtifactRef, JobError, JobExecutionLog, JobStatus
from domain.reports import Chart, ChartType, ParameterType, ReportConfiguration, ReportParameter


class Row(Protocol):
    def __getitem__(self, column: str, /) -> Any: ...


def report_to_row(report: ReportConfiguration) -> dict[str, Any]:
    return {
        "id": report.id,
        "name": report.name,
        "description": report.description,
        "query": report.query,
        "parameters": [
            {"name": p.name, "type": p.type.value, "required": p.required, "default": p.default}
            for p in report.parameters
        ],
        "formats": list(report.formats),
        "delivery_target": report.delivery_target,
        "async_enabled": report.async_enabled,
        "chart": chart_to_json(report.chart),
        "csv_formula_escape": report.csv_formula_escape,
        "created_at": report.created_at,
        "updated_at": report.updated_at,
        "deleted_at": report.deleted_at,
    }


def row_to_report(row: Row) -> ReportConfiguration:
    return ReportConfiguration(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        query=row["query"],
        parameters=tuple(
            ReportParameter(p["name"], ParameterType(p["type"]), p["required"], p["default"]) for p in row["parameters"]
        ),
        formats=tuple(row["formats"]),
        delivery_target=row["delivery_target"],
        async_enabled=row["async_enabled"],
        chart=json_to_chart(row["chart"]),
        csv_formula_escape=row["csv_formula_escape"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
    )


def chart_to_json(chart: Chart | None) -> dict[str, Any] | None:
    return None if chart is None else {"type": chart.type.value, "x": chart.x, "y": list(chart.y)}


def json_to_chart(document: Any) -> Chart | None:
    return None if document is None else Chart(ChartType(document["type"]), document["x"], tuple(document["y"]))


def job_state(job: JobExecutionLog) -> dict[str, Any]:
    """The columns that change over a job's life (everything but its identity and what it was asked to run)."""
    return {
        "status": job.status.value,
        "progress": job.progress,
        "attempts": job.attempts,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error_code": job.error.code if job.error else None,
        "error_message": job.error.message if job.error else None,
        "error_detail": job.error.detail if job.error else None,
        "artifact_key": job.artifact.key if job.artifact else None,
        "artifact_size": job.artifact.size if job.artifact else None,
        "artifact_sha256": job.artifact.sha256 if job.artifact else None,
        "lease_expires_at": job.lease_expires_at,
        "expires_at": job.expires_at,
        **callback_state(job.callback),
    }


def callback_state(callback: Callback | None) -> dict[str, Any]:
    """The columns of a callback's delivery, which change with the terminal transition and with each attempt."""
    return {
        "callback_status": callback and callback.status.value,
        "callback_attempts": callback and callback.attempts,
        "callback_last_error": callback and callback.last_error,
        "callback_next_attempt_at": callback and callback.next_attempt_at,
    }


def update_parameters(job: JobExecutionLog) -> dict[str, Any]:
    """The values of statements.UPDATE_JOB for a job read earlier: its state, guarded by the version it was read at."""
    state = {f"set_{column}": value for column, value in job_state(job).items()}
    return {"where_id": job.id, "where_version": job.version, **state}


def lease_parameters(job: JobExecutionLog) -> dict[str, Any]:
    """The values of statements.RENEW_LEASE for a Running job."""
    return {
        "where_id": job.id,
        "where_attempts": job.attempts,
        "new_lease": job.lease_expires_at,
        "new_progress": job.progress,
    }


def job_to_row(job: JobExecutionLog) -> dict[str, Any]:
    return {
        "id": job.id,
        "report_id": job.report_id,
        "owner_id": job.owner_id,
        "report_name": job.report_name,
        "query": job.query,
        "format": job.format,
        "parameters": job.parameters,
        "parameter_types": {name: kind.value for name, kind in job.parameter_types.items()},
        "chart": chart_to_json(job.chart),
        "csv_formula_escape": job.csv_formula_escape,
        "created_at": job.created_at,
        "request_id": job.request_id,
        "callback_url": job.callback and job.callback.url,
        "callback_status_url": job.callback and job.callback.status_url,
        "version": job.version,
        **job_state(job),
    }


def row_to_job(row: Row) -> JobExecutionLog:
    return JobExecutionLog(
        id=row["id"],
        report_id=row["report_id"],
        owner_id=row["owner_id"],
        report_name=row["report_name"],
        query=row["query"],
        format=row["format"],
        parameters=row["parameters"],
        parameter_types={name: ParameterType(kind) for name, kind in row["parameter_types"].items()},
        created_at=row["created_at"],
        chart=json_to_chart(row["chart"]),
        csv_formula_escape=row["csv_formula_escape"],
        status=JobStatus(row["status"]),
        progress=row["progress"],
        attempts=row["attempts"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=_error(row),
        artifact=_artifact(row),
        request_id=row["request_id"],
        lease_expires_at=row["lease_expires_at"],
        expires_at=row["expires_at"],
        callback=_callback(row),
        version=row["version"],
    )


def _callback(row: Row) -> Callback | None:
    if row["callback_url"] is None:
        return None
    return Callback(
        url=row["callback_url"],
        status_url=row["callback_status_url"],
        status=CallbackStatus(row["callback_status"]),
        attempts=row["callback_attempts"],
        last_error=row["callback_last_error"],
        next_attempt_at=row["callback_next_attempt_at"],
    )


def _error(row: Row) -> JobError | None:
    if row["error_code"] is None:
        return None
    return JobError(row["error_code"], row["error_message"] or "", row["error_detail"])


def _artifact(row: Row) -> ArtifactRef | None:
    if row["artifact_key"] is None:
        return None
    return ArtifactRef(row["artifact_key"], row["artifact_size"], row["artifact_sha256"])


def idempotency_to_row(record: IdempotencyRecord) -> dict[str, Any]:
    return {
        "owner_id": record.owner_id,
        "key": record.key,
        "fingerprint": record.fingerprint,
        "job_id": record.job_id,
        "created_at": record.created_at,
    }


def row_to_idempotency(row: Row) -> IdempotencyRecord:
    return IdempotencyRecord(
        owner_id=row["owner_id"],
        key=row["key"],
        fingerprint=row["fingerprint"],
        job_id=row["job_id"],
        created_at=row["created_at"],
    )
