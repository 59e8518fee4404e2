"""Alerts per (kind, subject) with a lifecycle (seen again, acknowledged, resolved), and the outbox
of webhook deliveries.

The alerts made before this revision were one per kind: they keep their rows with an empty
subject.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ALERT_COLUMNS = ("subject", "last_seen_as_of", "seen", "acked_at", "acked_by", "ack_reason",
                  "resolved_at")


def upgrade() -> None:
    with op.batch_alter_table("modelloop_alerts") as batch:
        # What breached (a feature, a metric, a check); "" for the per-kind alerts of before.
        batch.add_column(sa.Column("subject", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("last_seen_as_of", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("seen", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("acked_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("acked_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("ack_reason", sa.Text, nullable=True))
        batch.add_column(sa.Column("resolved_at", sa.DateTime, nullable=True))
    op.create_table(
        "modelloop_alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(255), nullable=False, index=True),
        sa.Column("alert_id", sa.Integer, nullable=False, index=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("delivered_at", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_modelloop_alert_deliveries_due", "status", "next_attempt_at"),
    )


def downgrade() -> None:
    op.drop_table("modelloop_alert_deliveries")
    with op.batch_alter_table("modelloop_alerts") as batch:
        for column in reversed(_ALERT_COLUMNS):
            batch.drop_column(column)
