"""Users get a preferred language (`de` or `en`, default `de`) for messages
such as quota errors when a request does not say which language it wants.

Existing users get the default. The CHECK constraint makes SQLite rebuild the
table (batch mode); env.py keeps foreign keys from cascading during the rebuild.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("locale", sa.String(2), nullable=False, server_default="de"))
        batch.create_check_constraint(op.f("ck_users_locale"), "locale IN ('de', 'en')")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_locale"), type_="check")
        batch.drop_column("locale")
