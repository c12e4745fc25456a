"""The store against real SQLite and PostgreSQL: the same tests on both."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from corral.core.model import (
    Backoff,
    ContainerRecord,
    ContainerSpec,
    ContainerState,
    CrashPolicy,
    DesiredState,
    Event,
    EventType,
    ExitInfo,
    ExitReason,
    RestartPolicy,
    RestartWhen,
)
from corral.store import InstanceRow, Store, StoreError, StoreIntegrityError
from corral.store._schema import metadata
from tests import pg

T0 = datetime(2026, 5, 9, 12, 0, 0, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of each dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'corral.db'}"
        return

    with pg.fresh_database() as fresh:
        yield fresh


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    """A migrated store on an empty database."""
    opened = Store(url)
    opened.migrate()
    yield opened
    opened.close()


def make_record(name: str = "web", **changes: object) -> ContainerRecord:
    """A plain stopped record, with ``changes`` applied."""
    record = ContainerRecord(
        name=name,
        spec=ContainerSpec(command=("python3", "-m", "http.server")),
        desired_state=DesiredState.STOPPED,
        state=ContainerState.STOPPED,
        create_time=T0,
        update_time=T0,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def make_event(name: str = "web", type: EventType = EventType.CREATED) -> Event:
    """An event about ``name`` at ``T0``."""
    return Event(type=type, name=name, time=T0, state=ContainerState.PENDING)


def make_instance(instance_id: str, name: str = "web") -> InstanceRow:
    """An instance of ``name`` whose token hash derives from its id."""
    return InstanceRow(instance_id, name, f"hash-{instance_id}", T0)


def sequences(events: list[Event]) -> list[int]:
    """The sequences of ``events``, in order."""
    return [event.sequence for event in events]


class TestMigrations:
    def test_migrating_twice_changes_nothing(self, url: str, store: Store) -> None:
        """A second migrate, even from a new store object, is a no-op."""
        store.commit(records=[make_record()], events=[make_event()])

        store.migrate()
        again = Store(url)
        again.migrate()

        assert [r.name for r in again.load_containers()] == ["web"]
        assert again.head_sequence() == 1
        again.close()

    def test_migrated_schema_matches_the_query_tables(
        self, url: str, store: Store
    ) -> None:
        """The migrations and ``_schema`` describe the same tables."""
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, metadata)
        engine.dispose()

        assert diffs == []

    def test_an_empty_log_has_head_zero_and_oldest_one(self, store: Store) -> None:
        """Before any event, ``after = oldest - 1 = 0`` is the valid cursor."""
        assert store.head_sequence() == 0
        assert store.oldest_sequence() == 1
        assert store.list_events(after=0, limit=10) == []


class TestRecords:
    def test_a_full_record_round_trips_exactly(self, url: str, store: Store) -> None:
        """Every field, crash history and aware datetimes come back equal, in UTC."""
        crash = ExitInfo(
            reason=ExitReason.SIGNALED,
            time=datetime(2026, 5, 9, 14, 1, 2, 345678, tzinfo=CEST),
            instance_id="i-1",
            signal=9,
            message="killed",
        )
        exit = ExitInfo(ExitReason.EXITED, T0, "i-2", exit_code=3, message="bye")
        spec = ContainerSpec(
            command=("python3", "worker.py"),
            image="python:3.11",
            env={"LOG_LEVEL": "info", "API_KEY": "${secret:API_KEY}"},
            config={"queue": "jobs", "concurrency": 4, "nested": {"a": [1, 2.5]}},
            working_dir="/srv",
            restart_policy=RestartPolicy(
                when=RestartWhen.ALWAYS,
                crash=CrashPolicy(window=timedelta(minutes=5), allowed_crashes=2),
                success_exit_codes=(75,),
                backoff=Backoff(initial=timedelta(milliseconds=250)),
            ),
            stop_signal="SIGINT",
            stop_grace_period=timedelta(seconds=3),
            labels={"team": "infra"},
        )
        record = make_record(
            "worker",
            spec=spec,
            desired_state=DesiredState.RUNNING,
            state=ContainerState.BACKOFF,
            create_time=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=CEST),
            update_time=T0,
            min_replica_set=True,
            ready=True,
            instance_id="i-2",
            runtime_id="4242",
            runtime_identity='{"pid": 4242, "start": 99}',
            restart_count=7,
            last_exit=exit,
            crash_history=(crash, exit),
            next_restart_time=T0 + timedelta(seconds=1),
            started_at=T0 - timedelta(minutes=1),
            last_request_id="req-1",
            pending_error="database down",
            retry_after=timedelta(milliseconds=1500),
        )
        store.commit(records=[record, make_record("api")])

        reopened = Store(url)
        loaded = reopened.load_containers()
        reopened.close()

        assert loaded == [make_record("api"), record]
        times = [
            loaded[1].create_time,
            loaded[1].next_restart_time,
            loaded[1].crash_history[0].time,
        ]
        assert all(t is not None and t.tzinfo is UTC for t in times)

    def test_a_commit_replaces_a_stored_record(self, store: Store) -> None:
        """Committing a record with a stored name overwrites it."""
        store.commit(records=[make_record()])
        changed = make_record(state=ContainerState.RUNNING, restart_count=1)

        store.commit(records=[changed])

        assert store.load_containers() == [changed]

    def test_deleting_removes_the_record_and_its_instances(self, store: Store) -> None:
        """A deleted container's tokens no longer find an instance."""
        store.commit(
            records=[make_record(), make_record("api")],
            instances=[make_instance("i-1"), make_instance("i-2", "api")],
        )

        store.commit(deleted=["web"], events=[make_event(type=EventType.DELETED)])

        assert [r.name for r in store.load_containers()] == ["api"]
        assert store.find_instance("hash-i-1") is None
        assert store.find_instance("hash-i-2") == make_instance("i-2", "api")

    def test_find_instance_looks_up_by_token_hash(self, store: Store) -> None:
        """The instance comes back whole; an unknown hash finds nothing."""
        instance = InstanceRow("i-1", "web", "ab" * 32, T0.astimezone(CEST))
        store.commit(records=[make_record()], instances=[instance])

        found = store.find_instance("ab" * 32)

        assert found == instance
        assert found is not None and found.created.tzinfo is UTC
        assert store.find_instance("cd" * 32) is None


class TestCommit:
    def test_a_failing_commit_leaves_nothing(self, store: Store) -> None:
        """A duplicate instance aborts the record, event and instance with it."""
        store.commit(records=[make_record()], instances=[make_instance("i-1")])

        with pytest.raises(StoreIntegrityError):
            store.commit(
                records=[make_record("api")],
                events=[make_event("api")],
                instances=[make_instance("i-2", "api"), make_instance("i-1")],
            )

        assert [r.name for r in store.load_containers()] == ["web"]
        assert store.head_sequence() == 0
        assert store.list_events(after=0, limit=10) == []
        assert store.find_instance("hash-i-2") is None
        assert sequences(store.commit(events=[make_event()])) == [1]

    def test_sequences_are_gap_free_and_survive_reopening(
        self, url: str, store: Store
    ) -> None:
        """Sequences count on from the last one, across store objects."""
        first = store.commit(events=[make_event()])
        second = store.commit(events=[make_event(type=t) for t in EventType][:3])
        store.close()

        reopened = Store(url)
        reopened.migrate()
        third = reopened.commit(events=[make_event(), make_event("api")])

        assert sequences(first + second + third) == [1, 2, 3, 4, 5, 6]
        assert [e.type for e in second] == list(EventType)[:3]
        assert reopened.head_sequence() == 6
        assert reopened.oldest_sequence() == 1
        assert reopened.list_events(after=0, limit=10) == first + second + third
        reopened.close()

    def test_events_round_trip_exactly(self, store: Store) -> None:
        """Stored events read back equal to the ones ``commit`` returned."""
        exit = ExitInfo(ExitReason.OOM_KILLED, T0.astimezone(CEST), "i-1", 137, 9)
        event = Event(
            type=EventType.EXITED,
            name="web",
            time=T0.astimezone(CEST),
            state=ContainerState.BACKOFF,
            instance_id="i-1",
            exit=exit,
            message="out of memory",
            restart_count=2,
        )

        committed = store.commit(events=[event])

        assert committed == [dataclasses.replace(event, sequence=1)]
        assert store.list_events(after=0, limit=1) == committed
        assert store.list_events(after=0, limit=1)[0].time.tzinfo is UTC

    def test_concurrent_commits_give_unique_gap_free_sequences(
        self, store: Store
    ) -> None:
        """Threads committing at once never share or skip a sequence."""
        threads, commits = 8, 25
        errors: list[BaseException] = []
        returned: list[int] = []
        lock = threading.Lock()

        def work(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(commits):
                    batch = [make_event(f"c{seed}")] * rng.randint(1, 3)
                    got = store.commit(events=batch)
                    with lock:
                        returned.extend(sequences(got))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        assert errors == []
        head = store.head_sequence()
        assert sorted(returned) == list(range(1, head + 1))
        stored = store.list_events(after=0, limit=head + 10)
        assert sequences(stored) == list(range(1, head + 1))

    def test_measure_the_cost_of_a_commit(
        self, store: Store, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Prints the mean time of a one-record, one-event commit (no assertion)."""
        record, event = make_record(), make_event()
        for _ in range(50):
            store.commit(records=[record], events=[event])

        rounds = 500
        start = time.perf_counter()
        for _ in range(rounds):
            store.commit(records=[record], events=[event])
        mean_ms = (time.perf_counter() - start) / rounds * 1000

        with capsys.disabled():
            print(f"\n{store.dialect} commit (1 record + 1 event): {mean_ms:.3f} ms")


class TestEvents:
    def test_list_events_filters_by_name_and_type_and_pages(self, store: Store) -> None:
        """Filters combine; ``after`` and ``limit`` page through the matches."""
        store.commit(
            events=[
                make_event("web", EventType.CREATED),
                make_event("api", EventType.CREATED),
                make_event("web", EventType.STARTING),
                make_event("db", EventType.STARTING),
                make_event("web", EventType.RUNNING),
                make_event("api", EventType.STARTING),
            ]
        )

        def listed(**filters: object) -> list[int]:
            return sequences(store.list_events(**filters))  # type: ignore[arg-type]

        assert listed(after=0, limit=100) == [1, 2, 3, 4, 5, 6]
        assert listed(after=0, limit=100, names=["web"]) == [1, 3, 5]
        assert listed(after=0, limit=100, names=["web", "api"]) == [1, 2, 3, 5, 6]
        assert listed(after=0, limit=100, types=[EventType.STARTING]) == [3, 4, 6]
        assert listed(
            after=0, limit=100, names=["api"], types=[EventType.STARTING]
        ) == [6]
        assert listed(after=0, limit=2, names=["web", "api"]) == [1, 2]
        assert listed(after=2, limit=2, names=["web", "api"]) == [3, 5]
        assert listed(after=5, limit=2, names=["web", "api"]) == [6]
        assert listed(after=6, limit=2) == []

    def test_pruning_keeps_the_head_and_a_contiguous_log(self, store: Store) -> None:
        """Old events go from the front; the head always stays."""
        old = [dataclasses.replace(make_event(), time=T0) for _ in range(4)]
        new = dataclasses.replace(make_event(), time=T0 + timedelta(hours=1))
        store.commit(events=[*old, new, old[0]])

        removed = store.prune_events(keep=1, older_than=T0 + timedelta(minutes=1))

        assert removed == 4
        assert store.oldest_sequence() == 5
        assert sequences(store.list_events(after=0, limit=10)) == [5, 6]

        removed = store.prune_events(keep=0, older_than=T0 + timedelta(days=1))

        assert removed == 1
        assert store.oldest_sequence() == store.head_sequence() == 6
        assert sequences(store.commit(events=[make_event()])) == [7]

    def test_pruning_keeps_the_newest_events_whatever_their_age(
        self, store: Store
    ) -> None:
        """``keep`` wins over ``older_than``."""
        store.commit(events=[make_event()] * 5)

        removed = store.prune_events(keep=3, older_than=T0 + timedelta(days=1))

        assert removed == 2
        assert sequences(store.list_events(after=0, limit=10)) == [3, 4, 5]


class TestReports:
    def test_a_committed_report_is_seen_with_its_first_sequence(
        self, store: Store
    ) -> None:
        """``report_seen`` answers the sequence of the report's first event."""
        store.commit(events=[make_event()])

        store.commit(
            events=[make_event(type=EventType.REPORTED), make_event()],
            report_event_id="ev-1",
        )

        assert store.report_seen("ev-1") == 2
        assert store.report_seen("ev-2") is None

    def test_a_report_committed_twice_is_refused_whole(self, store: Store) -> None:
        """The second commit of one report id stores nothing."""
        store.commit(events=[make_event()], report_event_id="ev-1")

        with pytest.raises(StoreIntegrityError):
            store.commit(events=[make_event()], report_event_id="ev-1")

        assert store.head_sequence() == 1

    def test_pruning_forgets_the_reports_of_pruned_events(self, store: Store) -> None:
        """A report is remembered as long as its event is retained."""
        store.commit(events=[make_event()], report_event_id="ev-1")
        store.commit(events=[make_event()], report_event_id="ev-2")

        store.prune_events(keep=1, older_than=T0 + timedelta(days=1))

        assert store.report_seen("ev-1") is None
        assert store.report_seen("ev-2") == 2

    def test_a_report_needs_an_event(self, store: Store) -> None:
        """There is no sequence to remember without an event."""
        with pytest.raises(ValueError, match="report_event_id"):
            store.commit(records=[make_record()], report_event_id="ev-1")


class TestErrors:
    def test_a_read_only_sqlite_database_raises_store_error(
        self, tmp_path: Path
    ) -> None:
        """The driver's "readonly database" error comes out as a StoreError."""
        writable = Store.for_data_dir(tmp_path / "data")
        writable.migrate()
        writable.close()
        path = tmp_path / "data" / "corral.db"
        read_only = Store(f"sqlite:///file:{path}?mode=ro&uri=true")

        with pytest.raises(StoreError) as caught:
            read_only.commit(events=[make_event()])

        assert "readonly" in str(caught.value)
        assert not isinstance(caught.value, sqlalchemy.exc.SQLAlchemyError)
        assert isinstance(caught.value.__cause__, sqlalchemy.exc.OperationalError)
        read_only.close()

    def test_a_file_that_is_not_a_database_raises_store_error(
        self, tmp_path: Path
    ) -> None:
        """Migrating garbage fails as a StoreError, not a driver error."""
        path = tmp_path / "corral.db"
        path.write_bytes(b"this is not a database" * 100)
        broken = Store(f"sqlite:///{path}")

        with pytest.raises(StoreError):
            broken.migrate()
        with pytest.raises(StoreError):
            broken.load_containers()
        broken.close()

    def test_an_unreachable_postgres_raises_store_error(self) -> None:
        """A server that is gone fails every call with a StoreError."""
        gone = Store("postgresql+psycopg://corral:corral@127.0.0.1:1/corral_test")

        for call in (gone.migrate, gone.head_sequence, gone.load_containers):
            with pytest.raises(StoreError) as caught:
                call()
            assert isinstance(caught.value.__cause__, sqlalchemy.exc.OperationalError)
        gone.close()

    def test_a_malformed_url_raises_store_error(self) -> None:
        """Even opening translates the error."""
        with pytest.raises(StoreError):
            Store("no-such-dialect://x")

    def test_a_closed_store_refuses_calls(self, store: Store) -> None:
        """Use after close is a StoreError, not a silently reopened pool."""
        store.close()

        with pytest.raises(StoreError, match="closed"):
            store.head_sequence()


class TestSqlite:
    def test_connections_use_wal_and_normal_sync(self, tmp_path: Path) -> None:
        """The durability settings are on for the store's connections."""
        store = Store.for_data_dir(tmp_path)
        store.migrate()

        with store._engine.connect() as conn:
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()

        assert (journal, synchronous, foreign_keys) == ("wal", 1, 1)
        store.close()

    def test_for_data_dir_creates_the_directory(self, tmp_path: Path) -> None:
        """The data directory may not exist yet."""
        opened = Store.for_data_dir(tmp_path / "a" / "b")
        opened.migrate()

        assert opened.dialect == "sqlite"
        assert (tmp_path / "a" / "b" / "corral.db").exists()
        opened.close()
