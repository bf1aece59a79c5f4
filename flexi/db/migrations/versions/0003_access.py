"""Campus access: local passwords, course keys, role quotas, quota counters,
browser sessions and (opt-in) content records.

Only new nullable columns and new tables: existing rows stay as they are.
Written out in full (not imported from the models), like 0001.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = "'admin', 'teacher', 'student', 'researcher', 'service'"
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(255), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("course_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_api_keys_course_id_courses"), "courses", ["course_id"], ["id"], ondelete="SET NULL")
        batch.create_index(op.f("ix_api_keys_course_id"), ["course_id"])
    op.create_table(
        "role_quotas",
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.Integer(), nullable=True),
        sa.Column("tokens_per_week", sa.Integer(), nullable=True),
        sa.CheckConstraint(f"role IN ({ROLES})", name=op.f("ck_role_quotas_role")),
        sa.PrimaryKeyConstraint("role", name=op.f("pk_role_quotas")),
    )
    op.create_table(
        "quota_counters",
        sa.Column("subject_kind", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("window", sa.String(8), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("subject_kind IN ('user', 'key', 'course')", name=op.f("ck_quota_counters_subject_kind")),
        sa.PrimaryKeyConstraint("subject_kind", "subject_id", "window", "window_start", name=op.f("pk_quota_counters")),
    )
    op.create_index(op.f("ix_quota_counters_window_start"), "quota_counters", ["window_start"])
    op.create_table(
        "login_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_login_sessions_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_login_sessions")),
    )
    op.create_index(op.f("ix_login_sessions_user_id"), "login_sessions", ["user_id"])
    op.create_table(
        "content_records",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("user_pseudonym", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_records")),
    )
    op.create_index(op.f("ix_content_records_at"), "content_records", ["at"])
    op.create_index(op.f("ix_content_records_user_pseudonym"), "content_records", ["user_pseudonym"])


def downgrade() -> None:
    op.drop_table("content_records")
    op.drop_table("login_sessions")
    op.drop_table("quota_counters")
    op.drop_table("role_quotas")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index(op.f("ix_api_keys_course_id"))
        batch.drop_constraint(op.f("fk_api_keys_course_id_courses"), type_="foreignkey")
        batch.drop_column("course_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_hash")
