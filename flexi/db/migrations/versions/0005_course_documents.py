"""Course documents of assistants and their chunks (issue 13).

New tables `assistant_documents` (ON DELETE CASCADE from `assistants`) and
`document_chunks` (ON DELETE CASCADE from `assistant_documents`): deleting an
assistant deletes its material. Written out in full, like 0001.

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

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "assistant_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assistant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", BIGINT, server_default="0", nullable=False),
        sa.Column("media_type", sa.String(100), server_default="", nullable=False),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(12), server_default="queued", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("chunks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("status IN ('queued', 'processing', 'ready', 'failed')",
                           name=op.f("ck_assistant_documents_status")),
        sa.ForeignKeyConstraint(["assistant_id"], ["assistants.id"],
                                name=op.f("fk_assistant_documents_assistant_id_assistants"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["uploaded_by"], ["users.id"], name=op.f("fk_assistant_documents_uploaded_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_documents")),
        sa.UniqueConstraint("assistant_id", "name", name=op.f("uq_assistant_documents_assistant_id_name")),
    )
    op.create_index(op.f("ix_assistant_documents_assistant_id"), "assistant_documents", ["assistant_id"])
    op.create_index(op.f("ix_assistant_documents_uploaded_by"), "assistant_documents", ["uploaded_by"])
    op.create_table(
        "document_chunks",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("heading", sa.Text(), server_default="", nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_model", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(["document_id"], ["assistant_documents.id"],
                                name=op.f("fk_document_chunks_document_id_assistant_documents"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_chunks")),
        sa.UniqueConstraint("document_id", "ordinal", name=op.f("uq_document_chunks_document_id_ordinal")),
    )
    op.create_index(op.f("ix_document_chunks_document_id"), "document_chunks", ["document_id"])


def downgrade() -> None:
    op.drop_table("document_chunks")
    op.drop_table("assistant_documents")
