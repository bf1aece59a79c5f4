"""End users of a service key (issue 15): an application's own user id (OpenAI's `user`, a Moodle site's
hash of its user) becomes a pseudonymous sub-identity of the key, with limits for each of them.

`quotas` / `quota_counters`: a new subject kind `enduser` (subject_id = the key): the limits each end user
of that key gets, and what each used. `quota_counters.end_user` (the end user's keyed hash, '' for every
other kind) joins the primary key, so one conditional upsert per window stays the whole admission.
`usage_records.end_user`: the end user's pseudonym (NULL for every request without one, all old rows).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "subject_kind IN ('user', 'key', 'course')"
NEW_KINDS = "subject_kind IN ('user', 'key', 'course', 'enduser')"
OLD_PK = ["subject_kind", "subject_id", "window", "window_start"]


def upgrade() -> None:
    with op.batch_alter_table("quotas") as batch:
        batch.drop_constraint(op.f("ck_quotas_subject_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_quotas_subject_kind"), NEW_KINDS)
    with op.batch_alter_table("quota_counters") as batch:
        batch.add_column(sa.Column("end_user", sa.String(64), nullable=False, server_default=""))
        batch.drop_constraint(op.f("ck_quota_counters_subject_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_quota_counters_subject_kind"), NEW_KINDS)
        batch.drop_constraint(op.f("pk_quota_counters"), type_="primary")
        batch.create_primary_key(op.f("pk_quota_counters"), [*OLD_PK, "end_user"])
    with op.batch_alter_table("usage_records") as batch:  # a nullable column: no table rebuild on SQLite
        batch.add_column(sa.Column("end_user", sa.String(64), nullable=True))
    op.create_index(op.f("ix_usage_records_end_user"), "usage_records", ["end_user"])


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_records_end_user"), table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("end_user")
    op.execute(sa.text("DELETE FROM quota_counters WHERE subject_kind = 'enduser'"))
    op.execute(sa.text("DELETE FROM quotas WHERE subject_kind = 'enduser'"))
    with op.batch_alter_table("quota_counters") as batch:
        batch.drop_constraint(op.f("pk_quota_counters"), type_="primary")
        batch.create_primary_key(op.f("pk_quota_counters"), OLD_PK)
        batch.drop_constraint(op.f("ck_quota_counters_subject_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_quota_counters_subject_kind"), OLD_KINDS)
        batch.drop_column("end_user")
    with op.batch_alter_table("quotas") as batch:
        batch.drop_constraint(op.f("ck_quotas_subject_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_quotas_subject_kind"), OLD_KINDS)
