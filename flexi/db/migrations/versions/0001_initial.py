"""Initial schema: users, groups, courses, memberships, API keys, model
policies, quotas, usage records, terms acceptances.

Written out in full rather than imported from the models: a migration is a
frozen record of the schema at one point, it must not change when the models do.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def timestamp(name: str, nullable: bool = True, server_default: sa.TextClause | None = None) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=server_default)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        timestamp("created_at", nullable=False, server_default=NOW),
        timestamp("disabled_at"),
        sa.CheckConstraint("role IN ('admin', 'teacher', 'student', 'researcher', 'service')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("subject", name=op.f("uq_users_subject")),
    )
    op.create_index(op.f("ix_users_pseudonym"), "users", ["pseudonym"], unique=True)

    for table in ("groups", "courses"):
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("name", sa.String(100), nullable=False),
            sa.Column("title", sa.String(255), nullable=True),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("name", name=op.f(f"uq_{table}_name")),
        )

    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], name=op.f("fk_group_members_group_id_groups"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_group_members_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_group_members")),
    )
    op.create_index(op.f("ix_group_members_user_id"), "group_members", ["user_id"])

    op.create_table(
        "course_members",
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.CheckConstraint("role IN ('teacher', 'tutor', 'student')", name=op.f("ck_course_members_role")),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"], name=op.f("fk_course_members_course_id_courses"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_course_members_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("course_id", "user_id", name=op.f("pk_course_members")),
    )
    op.create_index(op.f("ix_course_members_user_id"), "course_members", ["user_id"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        timestamp("created_at", nullable=False, server_default=NOW),
        timestamp("expires_at"),
        timestamp("revoked_at"),
        timestamp("last_used_at"),
        sa.Column("scopes", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_api_keys_owner_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index(op.f("ix_api_keys_owner_id"), "api_keys", ["owner_id"])

    op.create_table(
        "model_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(255), nullable=False),
        sa.Column("allowed_roles", sa.JSON(), nullable=True),
        sa.Column("allowed_groups", sa.JSON(), nullable=True),
        sa.Column("max_context", sa.Integer(), nullable=True),
        sa.Column("max_output", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_policies")),
        sa.UniqueConstraint("pattern", name=op.f("uq_model_policies_pattern")),
    )

    op.create_table(
        "quotas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_kind", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.Integer(), nullable=True),
        sa.Column("tokens_per_week", sa.Integer(), nullable=True),
        sa.CheckConstraint("subject_kind IN ('user', 'key', 'course')", name=op.f("ck_quotas_subject_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotas")),
        sa.UniqueConstraint("subject_kind", "subject_id", name=op.f("uq_quotas_subject_kind_subject_id")),
    )

    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        timestamp("at", nullable=False, server_default=NOW),
        sa.Column("user_pseudonym", sa.String(64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("course_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("queue_ms", sa.Integer(), nullable=False),
        sa.Column("generation_ms", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"], name=op.f("fk_usage_records_course_id_courses"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name=op.f("fk_usage_records_key_id_api_keys"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    for column in ("at", "user_pseudonym", "key_id", "course_id"):
        op.create_index(op.f(f"ix_usage_records_{column}"), "usage_records", [column])

    op.create_table(
        "terms_acceptances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        timestamp("accepted_at", nullable=False, server_default=NOW),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_terms_acceptances_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terms_acceptances")),
        sa.UniqueConstraint("user_id", "version", name=op.f("uq_terms_acceptances_user_id_version")),
    )


def downgrade() -> None:
    for table in (
        "terms_acceptances",
        "usage_records",
        "quotas",
        "model_policies",
        "api_keys",
        "course_members",
        "group_members",
        "courses",
        "groups",
        "users",
    ):
        op.drop_table(table)  # indexes go with their table
