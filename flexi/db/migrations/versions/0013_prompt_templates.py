"""Prompt templates (issue 15, "Caipi"): versioned instructions with typed parameters.

`prompt_templates`: the template (slug, course, owner, current version, switched off or not).
`prompt_template_versions`: one immutable row per version (text, parameters, model, options, who may run it).
`usage_records.template_id` / `template_version`: runs of a template are accounted like assistant chats.
`courses.description` / `learning_objectives`: course fields a template's `course` parameters may take.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "prompt_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(48), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"], name=op.f("fk_prompt_templates_course_id_courses"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_prompt_templates_owner_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_templates")),
        sa.UniqueConstraint("slug", name=op.f("uq_prompt_templates_slug")),
    )
    op.create_index(op.f("ix_prompt_templates_course_id"), "prompt_templates", ["course_id"])
    op.create_index(op.f("ix_prompt_templates_owner_id"), "prompt_templates", ["owner_id"])
    op.create_table(
        "prompt_template_versions",
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("parameters", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("options", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("roles", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("courses", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["template_id"], ["prompt_templates.id"],
                                name=op.f("fk_prompt_template_versions_template_id_prompt_templates"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_prompt_template_versions_created_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("template_id", "version", name=op.f("pk_prompt_template_versions")),
    )
    with op.batch_alter_table("courses") as batch:
        batch.add_column(sa.Column("description", sa.Text(), server_default="", nullable=False))
        batch.add_column(sa.Column("learning_objectives", sa.Text(), server_default="", nullable=False))
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("template_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("template_version", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_usage_records_template_id_prompt_templates"), "prompt_templates",
                                 ["template_id"], ["id"], ondelete="SET NULL")
        batch.create_index(op.f("ix_usage_records_template_id"), ["template_id"])


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_index(op.f("ix_usage_records_template_id"))
        batch.drop_constraint(op.f("fk_usage_records_template_id_prompt_templates"), type_="foreignkey")
        batch.drop_column("template_version")
        batch.drop_column("template_id")
    with op.batch_alter_table("courses") as batch:
        batch.drop_column("learning_objectives")
        batch.drop_column("description")
    op.drop_table("prompt_template_versions")
    op.drop_index(op.f("ix_prompt_templates_owner_id"), table_name="prompt_templates")
    op.drop_index(op.f("ix_prompt_templates_course_id"), table_name="prompt_templates")
    op.drop_table("prompt_templates")
