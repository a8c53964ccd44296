"""A report's output options, copied into each of its jobs: the chart of its PDF, and CSV formula escaping.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    for table in ("reports", "jobs"):
        op.add_column(table, sa.Column("chart", _JSON, nullable=True))
        op.add_column(table, sa.Column("csv_formula_escape", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    for table in ("jobs", "reports"):
        op.drop_column(table, "csv_formula_escape")
        op.drop_column(table, "chart")
