"""Energy and cost aggregates (issue 14): `energy_hours` and `energy_peaks`.

Hourly rows written by each replica's energy sampler (flexi.energy): joules per device, model and course,
busy seconds, whether the figure is estimated; and the peak of concurrent requests per hour. Composite
primary keys: a replica adds to its own row of an hour; rows beyond FLEXI_ENERGY_RETENTION_DAYS are deleted.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "energy_hours",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("course_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("joules", sa.Float(), server_default="0", nullable=False),
        sa.Column("busy_seconds", sa.Float(), server_default="0", nullable=False),
        sa.Column("estimated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "replica", "device", "model", "course_id", name=op.f("pk_energy_hours")),
    )
    op.create_index(op.f("ix_energy_hours_hour"), "energy_hours", ["hour"])
    op.create_table(
        "energy_peaks",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("peak", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("hour", "replica", name=op.f("pk_energy_peaks")),
    )
    op.create_index(op.f("ix_energy_peaks_hour"), "energy_peaks", ["hour"])


def downgrade() -> None:
    op.drop_index(op.f("ix_energy_peaks_hour"), table_name="energy_peaks")
    op.drop_table("energy_peaks")
    op.drop_index(op.f("ix_energy_hours_hour"), table_name="energy_hours")
    op.drop_table("energy_hours")
