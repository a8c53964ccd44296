"""The schema, as SQLAlchemy Core tables. Migrations create it; rows are mapped to entities in mapping.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from domain.jobs import JobStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

STATUS_VALUES = ", ".join(f"'{status.value}'" for status in JobStatus)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware (SQLite keeps no zone, so UTC is implied)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes cannot be stored; use timezone-aware UTC")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("formats", JSON, nullable=False),
    sa.Column("delivery_target", sa.String(40), nullable=False),
    sa.Column("async_enabled", sa.Boolean, nullable=False),
    sa.Column("chart", JSON, nullable=True),
    sa.Column("csv_formula_escape", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("deleted_at", UtcDateTime, nullable=True),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("report_id", sa.Uuid, sa.ForeignKey(reports.c.id), nullable=False),
    sa.Column("owner_id", sa.String, nullable=False),
    sa.Column("report_name", sa.String(200), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("parameter_types", JSON, nullable=False),
    sa.Column("chart", JSON, nullable=True),
    sa.Column("csv_formula_escape", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("error_detail", sa.Text, nullable=True),
    sa.Column("artifact_key", sa.String(512), nullable=True),
    sa.Column("artifact_size", sa.BigInteger, nullable=True),
    sa.Column("artifact_sha256", sa.String(64), nullable=True),
    sa.Column("request_id", sa.String, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("lease_expires_at", UtcDateTime, nullable=True),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("holds_slot", sa.Boolean, nullable=False, server_default=sa.false()),
    # The webhook called when the job ends (all NULL without one): its URL and the job's status URL, copied in at
    # generate; the delivery's state, written with the terminal transition and then by the deliveries.
    sa.Column("callback_url", sa.Text, nullable=True),
    sa.Column("callback_status_url", sa.Text, nullable=True),
    sa.Column("callback_status", sa.String(16), nullable=True),
    sa.Column("callback_attempts", sa.Integer, nullable=True),
    sa.Column("callback_last_error", sa.Text, nullable=True),
    sa.Column("callback_next_attempt_at", UtcDateTime, nullable=True),
    # Whether the job counts in its owner's job_owners.active_jobs (it was admitted under a limit, or counted when
    # one was set): only such a job gives a slot back when it finishes.
    sa.CheckConstraint(f"status IN ({STATUS_VALUES})", name="status"),
    sa.CheckConstraint("progress BETWEEN 0 AND 100", name="progress"),
    sa.Index(None, "status", "created_at"),  # recovery: unfinished jobs, oldest first
    sa.Index(None, "owner_id", "status"),  # one user's active jobs, counted when an admin sets their limit
    sa.Index(None, "status", "expires_at"),  # the retention sweep: Succeeded jobs past expires_at
    sa.Index(None, "owner_id", "created_at", "id"),  # one user's job list, newest first (keyset pagination)
    sa.Index(None, "created_at", "id"),  # an admin's list of every job, newest first
    sa.Index(None, "callback_next_attempt_at"),  # webhook deliveries due (NULL unless one is pending)
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("owner_id", sa.String, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("job_id", sa.Uuid, sa.ForeignKey(jobs.c.id, ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index(None, "created_at"),  # the purge of keys past their lifetime
)

inline_artifacts = sa.Table(
    "inline_artifacts",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
"""Artifacts small enough to keep in the service database (infrastructure.persistence.inline_artifacts), by key."""

job_owners = sa.Table(
    "job_owners",
    metadata,
    sa.Column("owner_id", sa.String, primary_key=True),
    sa.Column("active_jobs", sa.Integer, nullable=False),
    sa.Column("max_active_jobs", sa.Integer, nullable=True),
    sa.CheckConstraint("active_jobs >= 0", name="active_jobs"),
    sa.CheckConstraint("max_active_jobs >= 0", name="max_active_jobs"),
)
"""Per user: how many of their Queued or Running jobs hold a slot (`jobs.holds_slot`; kept in the transactions that
change it), and the limit an admin set for them (NULL: the service's default; 0: no limit). Jobs admitted while the
user has no limit take no slot, so that one busy service account's admissions never wait for each other."""
