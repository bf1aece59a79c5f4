"""LTI 1.3 (issue 15): platforms, started logins (state, nonce; deleting one is the nonce's single use), resource links → assistants,
open deep-linking requests, Flexi's signing keys and one-time dynamic-registration tokens.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "lti_platforms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False, server_default=""),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("deployment_ids", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("auth_url", sa.Text(), nullable=False),
        sa.Column("token_url", sa.Text(), nullable=False, server_default=""),
        sa.Column("jwks_url", sa.Text(), nullable=False),
        sa.Column("trust_admins", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("registered_by", sa.String(16), nullable=False, server_default="admin"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_platforms")),
        sa.UniqueConstraint("issuer", "client_id", name=op.f("uq_lti_platforms_issuer_client_id")),
    )
    op.create_table(
        "lti_logins",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("binding", sa.String(64), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["platform_id"], ["lti_platforms.id"], ondelete="CASCADE",
                                name=op.f("fk_lti_logins_platform_id_lti_platforms")),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_lti_logins")),
    )
    op.create_index(op.f("ix_lti_logins_platform_id"), "lti_logins", ["platform_id"])
    op.create_index(op.f("ix_lti_logins_expires_at"), "lti_logins", ["expires_at"])
    op.create_table(
        "lti_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column("resource_link_id", sa.String(255), nullable=False),
        sa.Column("assistant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.ForeignKeyConstraint(["platform_id"], ["lti_platforms.id"], ondelete="CASCADE",
                                name=op.f("fk_lti_links_platform_id_lti_platforms")),
        sa.ForeignKeyConstraint(["assistant_id"], ["assistants.id"], ondelete="CASCADE",
                                name=op.f("fk_lti_links_assistant_id_assistants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_links")),
        sa.UniqueConstraint("platform_id", "resource_link_id", name=op.f("uq_lti_links_platform_id_resource_link_id")),
    )
    op.create_index(op.f("ix_lti_links_assistant_id"), "lti_links", ["assistant_id"])
    op.create_table(
        "lti_deep_links",
        sa.Column("ticket_hash", sa.String(64), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("return_url", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["platform_id"], ["lti_platforms.id"], ondelete="CASCADE",
                                name=op.f("fk_lti_deep_links_platform_id_lti_platforms")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_lti_deep_links_user_id_users")),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"], ondelete="CASCADE",
                                name=op.f("fk_lti_deep_links_course_id_courses")),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_lti_deep_links")),
    )
    op.create_index(op.f("ix_lti_deep_links_expires_at"), "lti_deep_links", ["expires_at"])
    op.create_table(
        "lti_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_lti_keys")),
    )
    op.create_table(
        "lti_registration_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_lti_registration_tokens")),
    )


def downgrade() -> None:
    for table in ("lti_registration_tokens", "lti_keys", "lti_deep_links", "lti_links", "lti_logins",
                  "lti_platforms"):
        op.drop_table(table)
