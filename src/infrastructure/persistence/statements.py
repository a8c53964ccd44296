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

from application.ports import JobPosition, JobSelection
from domain.callbacks import CallbackStatus
from domain.jobs import JobStatus
from infrastructure.persistence.tables import UtcDateTime, inline_artifacts, job_owners, jobs, reports

ACTIVE = tuple(status.value for status in JobStatus if not status.is_terminal)
"""Queued and Running: the statuses of a job that counts against its owner's limit."""

JOB_STATE_COLUMNS = (
    "status",
    "progress",
    "attempts",
    "started_at",
    "finished_at",
    "error_code",
    "error_message",
    "error_detail",
    "artifact_key",
    "artifact_size",
    "artifact_sha256",
    "lease_expires_at",
    "expires_at",
    "callback_status",
    "callback_attempts",
    "callback_last_error",
    "callback_next_attempt_at",
)
"""The columns that change over a job's life (mapping.job_state fills them): everything but its identity and
what it was asked to run."""

# --- reads -----------------------------------------------------------------------------------------------------
GET_JOB = sa.select(jobs).where(jobs.c.id == sa.bindparam("where_id"))


def list_jobs(selection: JobSelection, limit: int, after: JobPosition | None) -> sa.Select[Any]:
    """A page of `selection`, newest first: keyset pagination on (created_at, id), which the index on
    (owner_id, created_at, id) serves for one owner's jobs, and the index on (created_at, id) for everyone's."""
    statement = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    if selection.owner_id is not None:
        statement = statement.where(jobs.c.owner_id == selection.owner_id)
    if selection.statuses is not None:
        statement = statement.where(jobs.c.status.in_(sorted(status.value for status in selection.statuses)))
    if selection.report_id is not None:
        statement = statement.where(jobs.c.report_id == selection.report_id)
    if selection.created_after is not None:
        statement = statement.where(jobs.c.created_at > selection.created_after)
    if selection.created_before is not None:
        statement = statement.where(jobs.c.created_at < selection.created_before)
    if after is not None:
        statement = statement.where(
            sa.tuple_(jobs.c.created_at, jobs.c.id)
            < sa.tuple_(sa.literal(after.created_at, UtcDateTime), sa.literal(after.job_id, sa.Uuid))
        )
    return statement


REPORT_IS_CURRENT = sa.select(reports.c.id).where(
    reports.c.id == sa.bindparam("where_report_id"),
    reports.c.deleted_at.is_(None),
    reports.c.updated_at == sa.bindparam("where_report_updated_at", type_=UtcDateTime),
)
"""The report a job is being admitted for, as it was read: neither updated nor deleted since."""


# --- a job's slot among its owner's active jobs ----------------------------------------------------------------
# A user with a limit (their own, or the default) counts their Queued and Running jobs in job_owners.active_jobs;
# each such job `holds_slot`. A user without one (0) takes no slot: their admissions never wait for each other.
def effective_limit(own_limit: sa.ColumnElement[int | None]) -> sa.ColumnElement[int]:
    """The owner's own limit when an admin set one, else the service's default; 0 means no limit."""
    return sa.func.coalesce(own_limit, sa.bindparam("default_limit", type_=sa.Integer))


EFFECTIVE_LIMIT = effective_limit(job_owners.c.max_active_jobs)
"""The limit of the job_owners row at hand."""
OWNER_LIMIT = effective_limit(
    sa.select(job_owners.c.max_active_jobs).where(job_owners.c.owner_id == sa.bindparam("slot_owner")).scalar_subquery()
)
"""The limit of the owner `slot_owner`, who may have no row yet."""
UNLIMITED = OWNER_LIMIT == 0
IS_UNLIMITED = sa.select(UNLIMITED)


Insert = Callable[[sa.Table], postgresql.Insert | sqlite.Insert]
"""The dialect's INSERT with ON CONFLICT (`postgresql.insert` or `sqlite.insert`)."""


def take_slot(insert: Insert, *, when: sa.ColumnElement[bool]) -> ReturningInsert[Any]:
    """Count one more active job for the owner `slot_owner` if `when` holds, the owner has a limit and is under it,
    in one statement: it returns the owner's row when the slot was taken, no row when not. Concurrent callers for one
    owner take turns on that row (ON CONFLICT DO UPDATE re-reads it under a row lock), so the limit is exact."""
    first = sa.select(sa.bindparam("slot_owner", type_=sa.String), sa.literal(1, sa.Integer)).where(when, ~UNLIMITED)
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
"""A job that holds a slot left Queued/Running for a terminal status: one slot fewer (in the same transaction)."""

_OWNER = job_owners.c.owner_id == sa.bindparam("where_owner")
_ACTIVE_JOBS_OF_OWNER = sa.and_(jobs.c.owner_id == sa.bindparam("where_owner"), jobs.c.status.in_(ACTIVE))
GET_OWNER = sa.select(
    sa.select(job_owners.c.max_active_jobs).where(_OWNER).scalar_subquery().label("max_active_jobs"),
    sa.select(sa.func.count()).where(_ACTIVE_JOBS_OF_OWNER).scalar_subquery().label("active_jobs"),
)
"""A user's own limit (NULL if none, also for a user without a row) and their Queued or Running jobs, counted."""


def set_limit(insert: Insert) -> ReturningInsert[Any]:
    """Give `where_owner` the limit `new_limit` (NULL: the default again), creating their row if need be; it locks
    the row until the transaction ends, so that COUNT_SLOTLESS_JOBS and ADD_SLOTS take effect together."""
    return (
        insert(job_owners)
        .values(owner_id=sa.bindparam("where_owner"), active_jobs=0, max_active_jobs=sa.bindparam("new_limit"))
        .on_conflict_do_update(
            index_elements=[job_owners.c.owner_id], set_={"max_active_jobs": sa.bindparam("new_limit")}
        )
        .returning(job_owners.c.owner_id)
    )


COUNT_SLOTLESS_JOBS = sa.update(jobs).where(_ACTIVE_JOBS_OF_OWNER, jobs.c.holds_slot.is_(False)).values(holds_slot=True)
"""The owner's active jobs admitted while they had no limit now hold a slot too (the rows changed: how many)."""
ADD_SLOTS = (
    sa.update(job_owners)
    .where(_OWNER)
    .values(active_jobs=job_owners.c.active_jobs + sa.bindparam("slots", type_=sa.Integer))
)

# --- job rows --------------------------------------------------------------------------------------------------
_JOB_COLUMNS = [column for column in jobs.c if column.name != "holds_slot"]


def job_values(holds_slot: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """A whole job row as bound values named after the columns (mapping.job_to_row), and `holds_slot`."""
    return sa.select(*(sa.bindparam(column.name, type_=column.type) for column in _JOB_COLUMNS), holds_slot)


INSERT_JOB = sa.insert(jobs).from_select(
    [*(c.name for c in _JOB_COLUMNS), "holds_slot"], job_values(sa.bindparam("holds_slot", type_=sa.Boolean))
)

UPDATE_JOB = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("where_id"), jobs.c.version == sa.bindparam("where_version"))
    .values(
        version=jobs.c.version + 1,
        **{column: sa.bindparam(f"set_{column}", type_=jobs.c[column].type) for column in JOB_STATE_COLUMNS},
    )
    .returning(jobs.c.holds_slot)
)
"""Save a transition of a job read earlier, guarded by its version: of two writers exactly one wins."""

_ARTIFACT_ROW = sa.select(
    sa.bindparam("set_artifact_key", type_=sa.Text),
    sa.bindparam("artifact_content", type_=sa.LargeBinary),
    sa.bindparam("set_finished_at", type_=UtcDateTime),
)
_ARTIFACT_COLUMNS = ["key", "content", "created_at"]
INSERT_INLINE_ARTIFACT = sa.insert(inline_artifacts).from_select(_ARTIFACT_COLUMNS, _ARTIFACT_ROW)
"""A Succeeded job's small artifact (`ArtifactRef.content`) kept under its key, written with the job's outcome, in
the same transaction as UPDATE_JOB: the artifact exists exactly when the outcome that names it does."""

CLAIM_JOB: ReturningUpdate[Any] = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("where_id"), jobs.c.status == JobStatus.QUEUED.value)
    .values(
        status=JobStatus.RUNNING.value,
        attempts=jobs.c.attempts + 1,
        started_at=sa.bindparam("set_started_at", type_=UtcDateTime),
        error_code=None,
        error_message=None,
        error_detail=None,
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

_PENDING_CALLBACK = jobs.c.callback_status == CallbackStatus.PENDING.value
# A CTE: PostgreSQL evaluates it once (a subquery under IN may be run again while the UPDATE proceeds, and take more
# rows than its LIMIT).
_DUE_CALLBACKS = (
    sa.select(jobs.c.id)
    .where(jobs.c.callback_next_attempt_at <= sa.bindparam("due_at", type_=UtcDateTime), _PENDING_CALLBACK)
    .order_by(jobs.c.callback_next_attempt_at)
    .limit(sa.bindparam("max_rows"))
    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer at a time anyway
    .cte("due")
)
CLAIM_DUE_CALLBACKS: ReturningUpdate[Any] = (
    sa.update(jobs)
    .where(jobs.c.id.in_(sa.select(_DUE_CALLBACKS.c.id)))
    .values(
        callback_next_attempt_at=sa.bindparam("held_until", type_=UtcDateTime),
        version=jobs.c.version + 1,
    )
    .returning(*jobs.c)
)
"""Take the webhook deliveries due at `due_at` (at most `max_rows`, the longest due first) for one worker: each is
held until `held_until` by moving its next attempt there, so no other worker takes it meanwhile (a worker lost
mid-delivery only delays it), and gets a new version, so that a writer who read it before cannot overwrite the
outcome. The jobs as saved. Served by the index on callback_next_attempt_at."""

# --- PostgreSQL: the same rules composed into one round trip ---------------------------------------------------
_report_current = REPORT_IS_CURRENT.cte("report_current")
_slot = take_slot(postgresql.insert, when=sa.exists(_report_current.select())).cte("slot")
_slot_taken = sa.exists(_slot.select())
_admitted = (
    sa.insert(jobs)
    .from_select(
        [*(c.name for c in _JOB_COLUMNS), "holds_slot"],
        job_values(_slot_taken).where(sa.exists(_report_current.select()), sa.or_(UNLIMITED, _slot_taken)),
    )
    .returning(jobs.c.id)
    .cte("admitted")
)
ADMIT_JOB_POSTGRES = sa.select(
    sa.exists(_report_current.select()).label("report_current"),
    sa.exists(_admitted.select()).label("admitted"),
)
"""The report check, the slot and the insert in one statement: the insert happens only if the report is current
and the owner has no limit or a slot was taken, and the slot is taken only if the report is current."""

_saved = UPDATE_JOB.cte("saved")
SAVE_JOB_RELEASING_SLOT_POSTGRES = (
    sa.select(sa.func.count())
    .select_from(_saved)
    .add_cte(
        RELEASE_SLOT.where(sa.exists(_saved.select().where(_saved.c.holds_slot)))
        .returning(job_owners.c.owner_id)
        .cte("released")
    )
)
"""UPDATE_JOB, and RELEASE_SLOT if the update won and the job held a slot, in one statement: the count of rows
saved (0 or 1)."""

SAVE_JOB_WITH_ARTIFACT_POSTGRES = SAVE_JOB_RELEASING_SLOT_POSTGRES.add_cte(
    sa.insert(inline_artifacts)
    .from_select(_ARTIFACT_COLUMNS, _ARTIFACT_ROW.where(sa.exists(_saved.select())))
    .returning(inline_artifacts.c.key)
    .cte("stored")
)
"""SAVE_JOB_RELEASING_SLOT_POSTGRES and, if the update won, INSERT_INLINE_ARTIFACT, in one statement: the count of
rows saved (0 or 1)."""
