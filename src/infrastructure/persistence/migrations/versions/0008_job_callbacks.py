"""Webhooks: a job's callback URL and the state of its delivery, on the job row (a job ends once, so it has at most
one delivery: the row is its outbox).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("callback_url", sa.Text()),
    ("callback_status_url", sa.Text()),
    ("callback_status", sa.String(16)),
    ("callback_attempts", sa.Integer()),
    ("callback_last_error", sa.Text()),
    ("callback_next_attempt_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("jobs", sa.Column(name, kind, nullable=True))
    op.create_index(op.f("ix_jobs_callback_next_attempt_at"), "jobs", ["callback_next_attempt_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_callback_next_attempt_at"), table_name="jobs")
    for name, _ in reversed(_COLUMNS):
        op.drop_column("jobs", name)
