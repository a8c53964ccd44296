"""Every rule of the job rows, written once as a SQLAlchemy Core statement.

The unit of work's repositories run these statements through SQLAlchemy (PostgreSQL and SQLite). The PostgreSQL
hot paths (admission, the worker's job ledger, the status read) run the same statements, compiled once, on the
driver connection (driver.py), and compose some of them into one round trip with CTEs. A rule changes here and
nowhere else.

Bind names never equal a column name where SQLAlchemy reserves them (the SET clause of an UPDATE).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from domain.jobs import JobStatus
from infrastructure.persistence.tables import UtcDateTime, job_owners, jobs, reports

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
"""The statuses that hold one of the owner's active-job slots."""

JOB_STATE_COLUMNS = (
    "status",
    "progress",
    "attempts",
    "started_at",
    "finished_at",
    "error_code",
    "error_message",
    "artifact_key",
    "artifact_size",
    "artifact_sha256",
    "lease_expires_at",
    "expires_at",
)
"""The columns that change over a job's life (mapping.job_state fills them): everything but its identity and
what it was asked to run."""

# --- reads -----------------------------------------------------------------------------------------------------
GET_JOB = sa.select(jobs).where(jobs.c.id == sa.bindparam("where_id"))

REPORT_IS_CURRENT = sa.select(reports.c.id).where(
    reports.c.id == sa.bindparam("where_report_id"),
    reports.c.deleted_at.is_(None),
    reports.c.updated_at == sa.bindparam("where_report_updated_at", type_=UtcDateTime),
)
"""The report a job is being admitted for, as it was read: neither updated nor deleted since."""

# --- a job's slot among its owner's active jobs ----------------------------------------------------------------
EFFECTIVE_LIMIT = sa.func.coalesce(job_owners.c.max_active_jobs, sa.bindparam("default_limit", type_=sa.Integer))
"""The owner's own limit when an admin set one, else the service's default; 0 means no limit."""


Insert = Callable[[sa.Table], postgresql.Insert | sqlite.Insert]
"""The dialect's INSERT with ON CONFLICT (`postgresql.insert` or `sqlite.insert`)."""


def take_slot(insert: Insert, *, when: sa.ColumnElement[bool]) -> ReturningInsert[Any]:
    """Count one more active job for the owner (`slot_owner`) if `when` holds and the owner is under its limit, in
    one statement: it returns the owner's row when the slot was taken, no row when not. Concurrent callers for one
    owner take turns on that row (ON CONFLICT DO UPDATE re-reads it under a row lock), so the limit is exact."""
    first = sa.select(sa.bindparam("slot_owner", type_=sa.String), sa.literal(1, sa.Integer)).where(when)
    return (
        insert(job_owners)
        .from_select(["owner_id", "active_jobs"], first)
        .on_conflict_do_update(
            index_elements=[job_owners.c.owner_id],
            set_={"active_jobs": job_owners.c.active_jobs + 1},
            where=sa.or_(EFFECTIVE_LIMIT == 0, job_owners.c.active_jobs < EFFECTIVE_LIMIT),
        )
        .returning(job_owners.c.owner_id)
    )


RELEASE_SLOT = (
    sa.update(job_owners)
    .where(job_owners.c.owner_id == sa.bindparam("where_owner"))
    .values(active_jobs=job_owners.c.active_jobs - 1)
)
"""A job of the owner left Queued/Running for a terminal status: one slot fewer (in the same transaction)."""

GET_OWNER = sa.select(job_owners).where(job_owners.c.owner_id == sa.bindparam("where_owner"))


def set_limit(insert: Insert) -> ReturningInsert[Any]:
    """Give `new_owner` the limit `new_limit` (NULL: the default again), creating their row if need be."""
    return (
        insert(job_owners)
        .values(owner_id=sa.bindparam("new_owner"), active_jobs=0, max_active_jobs=sa.bindparam("new_limit"))
        .on_conflict_do_update(
            index_elements=[job_owners.c.owner_id], set_={"max_active_jobs": sa.bindparam("new_limit")}
        )
        .returning(*job_owners.c)
    )


# --- job rows --------------------------------------------------------------------------------------------------
JOB_VALUES = sa.select(*(sa.bindparam(column.name, type_=column.type) for column in jobs.c))
"""A whole job row as bound values, named after the columns (mapping.job_to_row)."""
INSERT_JOB = sa.insert(jobs).from_select(list(jobs.c.keys()), JOB_VALUES)

UPDATE_JOB = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("where_id"), jobs.c.version == sa.bindparam("where_version"))
    .values(
        version=jobs.c.version + 1,
        **{column: sa.bindparam(f"set_{column}", type_=jobs.c[column].type) for column in JOB_STATE_COLUMNS},
    )
)
"""Save a transition of a job read earlier, guarded by its version: of two writers exactly one wins."""

CLAIM_JOB: ReturningUpdate[Any] = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("where_id"), jobs.c.status == JobStatus.QUEUED.value)
    .values(
        status=JobStatus.RUNNING.value,
        attempts=jobs.c.attempts + 1,
        started_at=sa.bindparam("set_started_at", type_=UtcDateTime),
        error_code=None,
        error_message=None,
        lease_expires_at=sa.bindparam("set_lease_expires_at", type_=UtcDateTime),
        version=jobs.c.version + 1,
    )
    .returning(*jobs.c)
)
"""`JobExecutionLog.start` for a row that is still Queued (only one delivery can claim it); the job as saved."""

_NEW_PROGRESS = sa.bindparam("new_progress", type_=sa.Integer)
RENEW_LEASE: ReturningUpdate[Any] = (
    sa.update(jobs)
    .where(
        jobs.c.id == sa.bindparam("where_id"),
        jobs.c.status == JobStatus.RUNNING.value,
        jobs.c.attempts == sa.bindparam("where_attempts"),
    )
    .values(
        lease_expires_at=sa.bindparam("new_lease", type_=UtcDateTime),
        # Not a filter: a heartbeat whose progress did not rise must still renew the lease.
        progress=sa.case((jobs.c.progress < _NEW_PROGRESS, _NEW_PROGRESS), else_=jobs.c.progress),
    )
    .returning(jobs.c.id)
)
"""A Running job's lease and progress (never lower), without a new version; no row when the job is no longer
Running in that attempt."""

# --- PostgreSQL: the same rules composed into one round trip ---------------------------------------------------
_report_current = REPORT_IS_CURRENT.cte("report_current")
_slot = take_slot(postgresql.insert, when=sa.exists(_report_current.select())).cte("slot")
_admitted = (
    sa.insert(jobs)
    .from_select(list(jobs.c.keys()), JOB_VALUES.where(sa.exists(_slot.select())))
    .returning(jobs.c.id)
    .cte("admitted")
)
ADMIT_JOB_POSTGRES = sa.select(
    sa.exists(_report_current.select()).label("report_current"),
    sa.exists(_admitted.select()).label("admitted"),
)
"""The report check, the slot and the insert in one statement: the insert happens only if the slot was taken,
and the slot is taken only if the report is current."""

_saved = UPDATE_JOB.returning(jobs.c.id).cte("saved")
SAVE_JOB_RELEASING_SLOT_POSTGRES = (
    sa.select(sa.func.count())
    .select_from(_saved)
    .add_cte(RELEASE_SLOT.where(sa.exists(_saved.select())).returning(job_owners.c.owner_id).cte("released"))
)
"""UPDATE_JOB, and RELEASE_SLOT if the update won, in one statement: the count of rows saved (0 or 1)."""
