"""A failed job's database message moves to `error_detail`, shown to admins only; `error_message` keeps what the
job's owner may read.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported: a migration keeps the text of its day when the code moves on. Before this
# revision a failed query's message was the database's own, after this prefix.
_PREFIX = "The report query failed: "
_ADVICE = "The report query failed: an administrator can see the database's message on this job"
_KNOWN_SAFE = (
    "The report query failed: the query tried to change data; report queries must be read-only",
    "The report query failed: A value is required for bind parameter %",
)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("error_detail", sa.Text(), nullable=True))
    jobs = sa.table("jobs", sa.column("error_code"), sa.column("error_message"), sa.column("error_detail"))
    message = jobs.c.error_message
    op.execute(
        jobs.update()
        .where(
            jobs.c.error_code == "REPORT_QUERY_FAILED",
            message.startswith(_PREFIX, autoescape=True),
            *(message.not_like(safe) for safe in _KNOWN_SAFE),
        )
        .values(error_detail=sa.func.substr(message, len(_PREFIX) + 1), error_message=_ADVICE)
    )


def downgrade() -> None:
    jobs = sa.table("jobs", sa.column("error_message"), sa.column("error_detail"))
    op.execute(
        jobs.update()
        .where(jobs.c.error_detail.is_not(None))
        .values(error_message=sa.literal(_PREFIX) + jobs.c.error_detail)
    )
    op.drop_column("jobs", "error_detail")
