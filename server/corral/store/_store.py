"""The :class:`Store`: containers, instances and the event log in one database.

Every public method is one short transaction, so the operator can call the
store straight from its event loop. Writes go through :meth:`Store.commit`,
which applies a whole change (records, deletions, instances, events) in one
transaction and hands out gap-free event sequences from a counter row.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import alembic.command
import alembic.config
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from corral.core.model import ContainerRecord, Event, EventType
from corral.store import _codec, _schema
from corral.store._errors import StoreError, translate_errors

_MIGRATIONS = Path(__file__).parent / "migrations"

_SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite writer waits for another's lock before failing. Five
seconds covers any commit of ours many times over; beyond that the database
is stuck and failing loudly is better than hanging the event loop."""

_POSTGRES_CONNECT_TIMEOUT_S = 5
"""Seconds before giving up on reaching PostgreSQL, for the same reason."""

_MIGRATION_LOCK_ID = 0x636F7272616C
"""PostgreSQL advisory lock ("corral") serialising concurrent migrations."""


@dataclasses.dataclass(frozen=True)
class InstanceRow:
    """One start of a container and the hash of the token its workload reports
    with."""

    instance_id: str
    name: str
    token_hash: str
    created: datetime


class Store:
    """Durable state of corral, in SQLite (the default) or PostgreSQL.

    SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit is written to
    the log without waiting for the disk, so it costs a fraction of a
    millisecond. A crash or SIGKILL of corral loses nothing, since committed
    data is already in the operating system's page cache; only a power loss or
    kernel crash can lose the last commits (never corrupt the database).

    The methods are thread safe; each borrows a pooled connection.
    """

    def __init__(self, url: str) -> None:
        """Opens (lazily) the database at ``url``.

        Args:
            url: a SQLAlchemy URL, ``sqlite:///path/corral.db`` or
                ``postgresql+psycopg://user:password@host/database``.

        Raises:
            StoreError: the URL is malformed, names another database, or its
                driver is missing.
        """
        with translate_errors("open"):
            self._engine = _create_engine(url)
        self._closed = threading.Event()
        self._statements = _Statements.build(self._engine.dialect.name)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Store:
        """Opens the SQLite database ``data_dir/corral.db``, creating the directory.

        Raises:
            StoreError: the directory cannot be created.
        """
        with translate_errors("open"):
            data_dir.mkdir(parents=True, exist_ok=True)

        return cls(f"sqlite:///{data_dir / 'corral.db'}")

    @property
    def dialect(self) -> str:
        """The database kind: ``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def migrate(self) -> None:
        """Brings the schema to the newest migration; does nothing if it is there.

        Raises:
            StoreError: the database is unreachable or a migration failed; the
                schema is then left as it was.
        """
        config = alembic.config.Config()
        config.set_main_option("script_location", str(_MIGRATIONS))

        with translate_errors("migrate"), self._transaction(write=True) as conn:
            if self.dialect == "postgresql":
                conn.execute(
                    sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID))
                )
            config.attributes["connection"] = conn
            alembic.command.upgrade(config, "head")

    def close(self) -> None:
        """Closes every pooled connection. The store must not be used afterwards."""
        self._closed.set()
        self._engine.dispose()

    def load_containers(self) -> list[ContainerRecord]:
        """Returns every stored container record, by name."""
        query = sa.select(_schema.containers).order_by(_schema.containers.c.name)

        with translate_errors("load containers"), self._transaction() as conn:
            rows = conn.execute(query).mappings().all()

        return [_codec.record_from_row(row) for row in rows]

    def commit(
        self,
        *,
        records: Sequence[ContainerRecord] = (),
        events: Sequence[Event] = (),
        deleted: Sequence[str] = (),
        instances: Sequence[InstanceRow] = (),
        report_event_id: str | None = None,
        reports: Sequence[tuple[str, int]] = (),
    ) -> list[Event]:
        """Applies one change atomically: all of it is stored, or none.

        In order: deletes the ``deleted`` containers (with their instances),
        upserts ``records``, inserts ``instances``, then appends ``events``
        under the next gap-free sequences.

        Args:
            records: container records to insert or replace.
            events: events to append, in order; their ``sequence`` is ignored.
            deleted: names of containers to delete.
            instances: new instances to insert.
            report_event_id: the ``event_id`` of the workload report this change
                handles; remembered with the sequence of the first event, for
                :meth:`report_seen`. Needs at least one event.
            reports: several reports at once, as (``event_id``, index of its
                event in ``events``); for commits that group many reports.

        Returns:
            ``events`` with their assigned sequences, in the same order.

        Raises:
            StoreIntegrityError: an instance id, token hash or report event id
                is already stored.
            StoreError: the database failed; nothing was written.
            ValueError: ``report_event_id`` was given without events.
        """
        if report_event_id is not None and not events:
            raise ValueError("report_event_id needs at least one event to point to")

        with translate_errors("commit"), self._transaction(write=True) as conn:
            if deleted:
                self._delete(conn, deleted)
            if records:
                self._upsert(conn, records)
            if instances:
                rows = [dataclasses.asdict(instance) for instance in instances]
                conn.execute(self._statements.insert_instance, rows)
            if not events:
                return []

            first = self._reserve_sequences(conn, len(events))
            stored = [
                dataclasses.replace(event, sequence=first + offset)
                for offset, event in enumerate(events)
            ]
            rows = [_codec.event_to_row(e, e.sequence) for e in stored]
            conn.execute(self._statements.insert_event, rows)
            if report_event_id is not None:
                self._insert_report(conn, report_event_id, stored[0])
            if reports:
                conn.execute(
                    self._statements.insert_report,
                    [
                        {
                            "event_id": event_id,
                            "sequence": stored[index].sequence,
                            "name": stored[index].name,
                            "instance_id": stored[index].instance_id,
                        }
                        for event_id, index in reports
                    ],
                )

        return stored

    def list_events(
        self,
        *,
        after: int,
        limit: int,
        names: Sequence[str] = (),
        types: Sequence[EventType] = (),
    ) -> list[Event]:
        """Returns up to ``limit`` events with a sequence above ``after``, oldest
        first, only of the given container ``names`` and ``types`` if any."""
        events = _schema.events
        query = (
            sa.select(events)
            .where(events.c.sequence > after)
            .order_by(events.c.sequence)
            .limit(limit)
        )
        if names:
            query = query.where(events.c.name.in_(names))
        if types:
            query = query.where(events.c.type.in_([t.value for t in types]))

        with translate_errors("list events"), self._transaction() as conn:
            rows = conn.execute(query).mappings().all()

        return [_codec.event_from_row(row) for row in rows]

    def head_sequence(self) -> int:
        """Returns the sequence of the newest event, 0 if there never was one."""
        with translate_errors("read head sequence"), self._transaction() as conn:
            return _read_counter(conn)

    def oldest_sequence(self) -> int:
        """Returns the smallest retained sequence; the head + 1 if the log is
        empty, so that ``after = oldest - 1`` is always a valid cursor."""
        query = sa.select(sa.func.min(_schema.events.c.sequence))

        with translate_errors("read oldest sequence"), self._transaction() as conn:
            oldest: int | None = conn.execute(query).scalar()
            return _read_counter(conn) + 1 if oldest is None else oldest

    def find_instance(self, token_hash: str) -> InstanceRow | None:
        """Returns the instance whose token hashes to ``token_hash``, if any."""
        instances = _schema.instances
        query = sa.select(instances).where(instances.c.token_hash == token_hash)

        with translate_errors("find instance"), self._transaction() as conn:
            row = conn.execute(query).mappings().one_or_none()

        return None if row is None else InstanceRow(**row)

    def report_seen(self, event_id: str) -> int | None:
        """Returns the sequence recorded for the workload report ``event_id``, or
        ``None`` if no such report was committed (or it was pruned)."""
        reports = _schema.reports
        query = sa.select(reports.c.sequence).where(reports.c.event_id == event_id)

        with translate_errors("read report"), self._transaction() as conn:
            sequence: int | None = conn.execute(query).scalar_one_or_none()

        return sequence

    def prune_events(self, *, keep: int, older_than: datetime) -> int:
        """Deletes old events, keeping the log a contiguous run up to the head.

        An event is removed when it is not among the newest ``keep`` events
        (at least the head is always kept) and it and every event before it
        are older than ``older_than``. The remembered reports of removed
        events go with them.

        Returns:
            The number of events removed.
        """
        events = _schema.events
        first_recent = sa.select(sa.func.min(events.c.sequence)).where(
            events.c.time >= older_than
        )

        with translate_errors("prune events"), self._transaction(write=True) as conn:
            cutoff = _read_counter(conn) - max(keep, 1)
            recent: int | None = conn.execute(first_recent).scalar()
            if recent is not None:
                cutoff = min(cutoff, recent - 1)

            removed = conn.execute(sa.delete(events).where(events.c.sequence <= cutoff))
            conn.execute(
                sa.delete(_schema.reports).where(_schema.reports.c.sequence <= cutoff)
            )

        return removed.rowcount

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """Yields a connection inside a transaction, committed at the end.

        On SQLite the transaction is begun on the driver directly (see
        :func:`_configure_sqlite`); ``write`` makes it take the write lock at
        once (``BEGIN IMMEDIATE``), so two writers queue on ``busy_timeout``
        instead of one failing when it upgrades its read lock.
        """
        if self._closed.is_set():
            raise StoreError("the store is closed")

        with self._engine.connect() as conn, conn.begin():
            driver = conn.connection.driver_connection
            if isinstance(driver, sqlite3.Connection):
                driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield conn

    def _delete(self, conn: sa.Connection, names: Sequence[str]) -> None:
        # Instances go explicitly rather than by the foreign key's cascade, so
        # that a database once written without foreign keys on stays clean.
        instances, containers = _schema.instances, _schema.containers
        conn.execute(sa.delete(instances).where(instances.c.name.in_(names)))
        conn.execute(sa.delete(containers).where(containers.c.name.in_(names)))

    def _upsert(self, conn: sa.Connection, records: Sequence[ContainerRecord]) -> None:
        rows = [_codec.record_to_row(record) for record in records]
        conn.execute(self._statements.upsert_container, rows)

    def _reserve_sequences(self, conn: sa.Connection, count: int) -> int:
        """Advances the event counter by ``count``; returns the first sequence.

        The counter row stays locked until the transaction ends, so concurrent
        writers on PostgreSQL take their ranges one after the other, and a
        rollback returns the range: no gaps, no duplicates.
        """
        params = {"count": count}
        last: int = conn.execute(self._statements.reserve, params).scalar_one()
        return last - count + 1

    def _insert_report(self, conn: sa.Connection, event_id: str, event: Event) -> None:
        row = {
            "event_id": event_id,
            "sequence": event.sequence,
            "name": event.name,
            "instance_id": event.instance_id,
        }
        conn.execute(self._statements.insert_report, row)


@dataclasses.dataclass(frozen=True)
class _Statements:
    """The write statements, built once: building an upsert costs more than
    running it."""

    upsert_container: sa.Insert
    insert_instance: sa.Insert
    insert_event: sa.Insert
    insert_report: sa.Insert
    reserve: sa.Update

    @classmethod
    def build(cls, dialect: str) -> _Statements:
        """Builds the statements for ``dialect`` ("sqlite" or "postgresql")."""
        containers, counters = _schema.containers, _schema.counters

        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        upsert = insert(containers)
        updates = {
            column.name: upsert.excluded[column.name]
            for column in containers.columns
            if column.name != "name"
        }
        upsert = upsert.on_conflict_do_update(index_elements=["name"], set_=updates)

        reserve = (
            sa.update(counters)
            .where(counters.c.name == _schema.EVENTS_COUNTER)
            .values(value=counters.c.value + sa.bindparam("count"))
            .returning(counters.c.value)
        )

        return cls(
            upsert_container=upsert,
            insert_instance=sa.insert(_schema.instances),
            insert_event=sa.insert(_schema.events),
            insert_report=sa.insert(_schema.reports),
            reserve=reserve,
        )


_READ_HEAD = sa.select(_schema.counters.c.value).where(
    _schema.counters.c.name == _schema.EVENTS_COUNTER
)


def _read_counter(conn: sa.Connection) -> int:
    value: int = conn.execute(_READ_HEAD).scalar_one()
    return value


def _create_engine(url: str) -> sa.Engine:
    """Creates the engine, with the per-connection settings of its dialect.

    Raises:
        StoreError: the URL names neither SQLite nor PostgreSQL.
    """
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        connect_args = {"connect_timeout": _POSTGRES_CONNECT_TIMEOUT_S}
        return sa.create_engine(parsed, hide_parameters=True, connect_args=connect_args)
    if backend != "sqlite":
        raise StoreError(f"unsupported database {backend!r}: use sqlite or postgresql")

    # Every checkout ends in an explicit commit or rollback, so the pool need
    # not reset connections (another rollback per call) when they come back.
    engine = sa.create_engine(parsed, hide_parameters=True, pool_reset_on_return=None)
    sa.event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    """Sets the durability and locking trade-offs of every SQLite connection.

    The driver's own transaction handling is turned off (``isolation_level =
    None``) so that :meth:`Store._transaction` decides how each transaction
    begins. That is done on the driver rather than in a SQLAlchemy ``begin``
    listener: any connection listener makes every statement dispatch events,
    which costs a third of a small commit.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()
