"""Course assistants and (opt-in) server-side chat history.

New tables `assistants`, `conversations`, `chat_messages`, and a nullable
`usage_records.assistant_id`: existing rows stay as they are (the new column is
NULL for them). Written out in full (not imported from the models), like 0001.
A later `assistant_documents` table (course documents) will hang off
`assistants.id`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "assistants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(32), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("system_prompt", sa.Text(), server_default="", nullable=False),
        sa.Column("welcome_message", sa.Text(), server_default="", nullable=False),
        sa.Column("example_questions", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("options", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("audience", sa.String(8), server_default="course", nullable=False),
        sa.Column("show_system_prompt", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("audience IN ('course', 'campus')", name=op.f("ck_assistants_audience")),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"], name=op.f("fk_assistants_course_id_courses"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_assistants_owner_id_users"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistants")),
        sa.UniqueConstraint("slug", name=op.f("uq_assistants_slug")),
    )
    op.create_index(op.f("ix_assistants_course_id"), "assistants", ["course_id"])
    op.create_index(op.f("ix_assistants_owner_id"), "assistants", ["owner_id"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("assistant_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_conversations_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["assistant_id"], ["assistants.id"], name=op.f("fk_conversations_assistant_id_assistants"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(op.f("ix_conversations_user_id"), "conversations", ["user_id"])
    op.create_index(op.f("ix_conversations_assistant_id"), "conversations", ["assistant_id"])
    op.create_index(op.f("ix_conversations_updated_at"), "conversations", ["updated_at"])
    op.create_table(
        "chat_messages",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system')", name=op.f("ck_chat_messages_role")),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name=op.f("fk_chat_messages_conversation_id_conversations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    op.create_index(op.f("ix_chat_messages_conversation_id"), "chat_messages", ["conversation_id"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("assistant_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_usage_records_assistant_id_assistants"), "assistants", ["assistant_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index(op.f("ix_usage_records_assistant_id"), ["assistant_id"])


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_index(op.f("ix_usage_records_assistant_id"))
        batch.drop_constraint(op.f("fk_usage_records_assistant_id_assistants"), type_="foreignkey")
        batch.drop_column("assistant_id")
    op.drop_table("chat_messages")
    op.drop_table("conversations")
    op.drop_table("assistants")
