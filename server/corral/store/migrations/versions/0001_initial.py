"""The initial schema: containers, instances, events, reports and counters.

Revision ID: 0001
Revises:
Create Date: 2026-05-09

Times are ``timestamptz`` on PostgreSQL and naive UTC text on SQLite (the
store converts). Event sequences are not auto-incremented: the store takes
them from the ``counters`` row in the writing transaction, so a rollback
leaves no gap.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.JSON(), nullable=nullable)


def upgrade() -> None:
    """Creates every table and seeds the event counter at 0."""
    op.create_table(
        "containers",
        sa.Column("name", sa.Text(), primary_key=True),
        _json("spec"),
        sa.Column("desired_state", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("min_replica_set", sa.Boolean(), nullable=False),
        sa.Column("instance_id", sa.Text(), nullable=False),
        sa.Column("runtime_id", sa.Text(), nullable=False),
        sa.Column("runtime_identity", sa.Text(), nullable=False),
        sa.Column("restart_count", sa.Integer(), nullable=False),
        _json("last_exit", nullable=True),
        _json("crash_history"),
        _time("next_restart_time", nullable=True),
        _time("started_at", nullable=True),
        sa.Column("last_request_id", sa.Text(), nullable=False),
        sa.Column("pending_error", sa.Text(), nullable=False),
        sa.Column("retry_after_ms", sa.BigInteger(), nullable=True),
        _time("create_time"),
        _time("update_time"),
    )

    op.create_table(
        "instances",
        sa.Column("instance_id", sa.Text(), primary_key=True),
        sa.Column(
            "name",
            sa.Text(),
            sa.ForeignKey("containers.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.Text(), nullable=False),
        _time("created"),
    )
    op.create_index("ix_instances_name", "instances", ["name"])
    op.create_index("ix_instances_token_hash", "instances", ["token_hash"], unique=True)

    # On SQLite an INTEGER PRIMARY KEY is the rowid itself: no extra index.
    sequence = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "events",
        sa.Column("sequence", sequence, primary_key=True, autoincrement=False),
        _time("time"),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.Text(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        _json("exit", nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("restart_count", sa.Integer(), nullable=False),
    )
    op.create_index("ix_events_name", "events", ["name"])

    op.create_table(
        "reports",
        sa.Column("event_id", sa.Text(), primary_key=True),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.Text(), nullable=False),
    )
    op.create_index("ix_reports_sequence", "reports", ["sequence"])

    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(counters, [{"name": "events", "value": 0}])


def downgrade() -> None:
    """Drops every table."""
    for table in ("counters", "reports", "events", "instances", "containers"):
        op.drop_table(table)
