"""The tables of version zero: runs, decisions, monitoring, alerts, triggers, state.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _keyed(name: str, *columns: sa.Column) -> None:  # type: ignore[type-arg]
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(255), nullable=False, index=True),
        *columns,
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def upgrade() -> None:
    _keyed(
        "modelloop_runs",
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("as_of", sa.DateTime, nullable=True),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
    )
    _keyed(
        "modelloop_decisions",
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("as_of", sa.DateTime, nullable=True),
    )
    _keyed(
        "modelloop_monitoring",
        sa.Column("as_of", sa.DateTime, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
    )
    _keyed(
        "modelloop_alerts",
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("as_of", sa.DateTime, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolved_as_of", sa.DateTime, nullable=True),
    )
    _keyed(
        "modelloop_triggers",
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("as_of", sa.DateTime, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("fired", sa.Boolean, nullable=False),
    )
    op.create_table(
        "modelloop_state",
        sa.Column("model", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for name in ("modelloop_state", "modelloop_triggers", "modelloop_alerts",
                 "modelloop_monitoring", "modelloop_decisions", "modelloop_runs"):
        op.drop_table(name)
