"""Per-user active-job counters and limits (`job_owners`), replacing the count of active jobs at each admission.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported: a migration keeps the schema of its day when the code moves on. Every active
# job counts, as it did under the count this replaces.
_HOLD_SLOTS = "UPDATE jobs SET holds_slot = true WHERE status IN ('Queued', 'Running')"
_COUNT_ACTIVE_JOBS = """
INSERT INTO job_owners (owner_id, active_jobs)
SELECT owner_id, count(*) FROM jobs WHERE status IN ('Queued', 'Running') GROUP BY owner_id
"""
_ADMIT_JOB_FUNCTION = "reportgen_admit_job(jsonb, timestamptz, integer, bigint)"


def upgrade() -> None:
    op.create_table(
        "job_owners",
        sa.Column("owner_id", sa.String(), nullable=False),
        sa.Column("active_jobs", sa.Integer(), nullable=False),
        sa.Column("max_active_jobs", sa.Integer(), nullable=True),
        sa.CheckConstraint("active_jobs >= 0", name=op.f("ck_job_owners_active_jobs")),
        sa.CheckConstraint("max_active_jobs >= 0", name=op.f("ck_job_owners_max_active_jobs")),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_job_owners")),
    )
    op.add_column("jobs", sa.Column("holds_slot", sa.Boolean(), nullable=False, server_default=sa.false()))
    if op.get_bind().dialect.name == "postgresql":
        # Admissions and transitions running during the upgrade wait, so the counts are exact when the new code
        # takes over.
        op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
        op.execute(f"DROP FUNCTION IF EXISTS {_ADMIT_JOB_FUNCTION}")
    op.execute(_HOLD_SLOTS)
    op.execute(_COUNT_ACTIVE_JOBS)


def downgrade() -> None:
    op.drop_table("job_owners")
    op.drop_column("jobs", "holds_slot")
    if op.get_bind().dialect.name == "postgresql":
        scripts = op.get_context().script
        previous = scripts.get_revision("0003") if scripts is not None else None
        if previous is not None:  # the function revision 0003 created, for the code of that revision
            op.execute(previous.module.ADMIT_JOB)
