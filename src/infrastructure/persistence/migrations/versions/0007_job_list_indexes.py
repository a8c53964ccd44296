"""Indexes for the job list: one user's jobs and everyone's, newest first, paged by (created_at, id).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_jobs_owner_id_created_at_id"), "jobs", ["owner_id", "created_at", "id"])
    op.create_index(op.f("ix_jobs_created_at_id"), "jobs", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_created_at_id"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_owner_id_created_at_id"), table_name="jobs")
