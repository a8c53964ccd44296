"""PostgreSQL: `reportgen_admit_job`, which records a generate request's job in one round trip.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Called as one autocommit statement, so its transaction (and the advisory lock) ends when it returns.
# In READ COMMITTED each statement of a VOLATILE plpgsql function takes a fresh snapshot: the count, run after
# the lock is granted, sees the job that the previous holder of the lock committed. The lock key is the one the
# unit-of-work path takes (SqlAlchemyJobRepository.count_active), so both paths take turns with each other.
# `INSERT ... SELECT * FROM jsonb_populate_record(NULL::jobs, job)`: the row's keys are the table's columns.
ADMIT_JOB = """
CREATE OR REPLACE FUNCTION reportgen_admit_job(
    job jsonb, report_updated_at timestamptz, max_active integer, lock_key bigint
) RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM 1 FROM reports
     WHERE id = (job ->> 'report_id')::uuid AND deleted_at IS NULL AND updated_at = report_updated_at;
    IF NOT FOUND THEN
        RETURN 'report_changed';
    END IF;
    IF max_active IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(lock_key);
        IF (SELECT count(*) FROM jobs
             WHERE owner_id = job ->> 'owner_id' AND status IN ('Queued', 'Running')) >= max_active THEN
            RETURN 'too_many_active';
        END IF;
    END IF;
    INSERT INTO jobs SELECT * FROM jsonb_populate_record(NULL::jobs, job);
    RETURN 'queued';
END;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ADMIT_JOB)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS reportgen_admit_job(jsonb, timestamptz, integer, bigint)")
