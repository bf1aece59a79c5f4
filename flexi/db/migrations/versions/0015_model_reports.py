"""Model reports (issue 16): results of `flexi bench|eval|safety|quant-report` stored with the model they measured,
so teachers see them in the model picker and catalogue and `flexi select` can combine them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "model_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(80), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False, server_default=""),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_model_reports_created_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_reports")),
    )
    op.create_index("ix_model_reports_model_kind", "model_reports", ["model", "kind", "id"])


def downgrade() -> None:
    op.drop_index("ix_model_reports_model_kind", table_name="model_reports")
    op.drop_table("model_reports")
