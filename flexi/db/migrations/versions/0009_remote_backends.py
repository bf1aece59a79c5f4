"""Remote backends added at run time by administrators (issue 14), and a version counter replicas poll.

`remote_backends`: the fields of a `[[backends]]` entry (flexi.config.BackendConfig), one row per backend.
`config_versions`: one row per kind of run-time configuration ("backends"), raised with every change.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "remote_backends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("models", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("api_key", sa.Text(), nullable=True),
        sa.Column("max_concurrency", sa.Integer(), server_default="8", nullable=False),
        sa.Column("external", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=True),
        sa.Column("context_length", sa.Integer(), nullable=True),
        sa.Column("timeout", sa.Float(), server_default="300", nullable=False),
        sa.Column("capabilities", sa.JSON(), server_default='["completion", "tools"]', nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_remote_backends_created_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_backends")),
        sa.UniqueConstraint("name", name=op.f("uq_remote_backends_name")),
    )
    op.create_table(
        "config_versions",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("version", BIGINT, server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_config_versions")),
    )


def downgrade() -> None:
    op.drop_table("config_versions")
    op.drop_table("remote_backends")
