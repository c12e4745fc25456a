"""The tables the store queries, as SQLAlchemy Core objects.

These definitions serve the queries only. The schema itself is created and
changed by the Alembic migrations under ``migrations/versions``; a test
compares the migrated database with this metadata so the two cannot drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

EVENTS_COUNTER = "events"
"""The ``counters`` row holding the last event sequence handed out."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime in and out, on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value
    is stored as naive UTC and gets its ``tzinfo`` back when read. Naive
    datetimes are refused: their meaning would depend on the host's zone.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        """Converts an aware datetime to UTC (naive UTC for SQLite)."""
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime, got {value!r}")

        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Returns the stored value as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]  # SQLite
        return value.astimezone(UTC)  # type: ignore[no-any-return]  # PostgreSQL


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


# SQLite makes an INTEGER PRIMARY KEY the rowid itself: no separate index.
_SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

containers = sa.Table(
    "containers",
    metadata,
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("spec", _json(), nullable=False),
    sa.Column("desired_state", sa.String(32), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("ready", sa.Boolean(), nullable=False),
    sa.Column("min_replica_set", sa.Boolean(), nullable=False),
    sa.Column("instance_id", sa.Text(), nullable=False),
    sa.Column("runtime_id", sa.Text(), nullable=False),
    sa.Column("runtime_identity", sa.Text(), nullable=False),
    sa.Column("restart_count", sa.Integer(), nullable=False),
    sa.Column("last_exit", _json(), nullable=True),
    sa.Column("crash_history", _json(), nullable=False),
    sa.Column("next_restart_time", UTCDateTime(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("last_request_id", sa.Text(), nullable=False),
    sa.Column("pending_error", sa.Text(), nullable=False),
    sa.Column("retry_after_ms", sa.BigInteger(), nullable=True),
    sa.Column("create_time", UTCDateTime(), nullable=False),
    sa.Column("update_time", UTCDateTime(), nullable=False),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("instance_id", sa.Text(), primary_key=True),
    sa.Column(
        "name",
        sa.Text(),
        sa.ForeignKey("containers.name", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("token_hash", sa.Text(), nullable=False),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Index("ix_instances_token_hash", "token_hash", unique=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("sequence", _SEQUENCE, primary_key=True, autoincrement=False),
    sa.Column("time", UTCDateTime(), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("name", sa.Text(), nullable=False, index=True),
    sa.Column("instance_id", sa.Text(), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("exit", _json(), nullable=True),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("restart_count", sa.Integer(), nullable=False),
)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("event_id", sa.Text(), primary_key=True),
    sa.Column("sequence", sa.BigInteger(), nullable=False, index=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("instance_id", sa.Text(), nullable=False),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger(), nullable=False),
)
