"""The run ledger: who started a run and why, its parameters, error, attempt and holder; and the
leases that keep one running instance per pipeline across processes and machines.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("modelloop_runs") as batch:
        batch.add_column(sa.Column("origin", sa.String(32), nullable=False, server_default="cli"))
        batch.add_column(sa.Column("params", sa.Text, nullable=True))
        batch.add_column(sa.Column("error", sa.Text, nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("retry_of", sa.Integer, nullable=True))
        batch.add_column(sa.Column("holder", sa.String(255), nullable=True))
        # One run per scheduled fire time or trigger condition, whichever process starts it.
        batch.add_column(sa.Column("dedup_key", sa.String(255), nullable=True))
        batch.create_index(
            "ix_modelloop_runs_dedup", ["model", "kind", "dedup_key"], unique=True
        )
    op.create_table(
        "modelloop_leases",
        sa.Column("model", sa.String(255), primary_key=True),
        sa.Column("pipeline", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("modelloop_leases")
    with op.batch_alter_table("modelloop_runs") as batch:
        batch.drop_index("ix_modelloop_runs_dedup")
        for column in ("dedup_key", "holder", "retry_of", "attempt", "error", "params", "origin"):
            batch.drop_column(column)
