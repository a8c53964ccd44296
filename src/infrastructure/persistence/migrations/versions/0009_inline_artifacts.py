"""Small artifacts kept in the service database, by key (infrastructure.persistence.inline_artifacts).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inline_artifacts",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_inline_artifacts")),
    )


def downgrade() -> None:
    op.drop_table("inline_artifacts")
