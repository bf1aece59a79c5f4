"""The usage journal (issue 14): a generation's usage row is written when it starts ("running") and
completed at its end, so a replica killed mid-stream leaves its in-flight requests on record.

`usage_records.request_id`: unique, joins the start to the end (NULL for rows never journaled, all old rows).
`usage_records.replica`: the replica that ran the request (a restarted replica closes its own leftovers).
`ix_usage_records_running`: a partial index on `at` of the running rows, for the sweep.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:  # nullable columns: no table rebuild on SQLite
        batch.add_column(sa.Column("request_id", sa.String(96), nullable=True))
        batch.add_column(sa.Column("replica", sa.String(128), nullable=True))
    op.create_index(op.f("ix_usage_records_request_id"), "usage_records", ["request_id"], unique=True)
    op.create_index("ix_usage_records_running", "usage_records", ["at"], sqlite_where=RUNNING,
                    postgresql_where=RUNNING)


def downgrade() -> None:
    op.drop_index("ix_usage_records_running", table_name="usage_records")
    op.drop_index(op.f("ix_usage_records_request_id"), table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("replica")
        batch.drop_column("request_id")
