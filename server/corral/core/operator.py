"""The operator: intent, observation and the restart machinery.

All state changes happen on the event loop thread. Each change is computed as
a new record plus the events describing it, committed to the store in one
transaction, and only then applied in memory and published. Decisions (is it a
failure, is it crash looping, how long to wait) are the pure functions of
:mod:`corral.core.policy`; this module only sequences them.

Concurrency rules:

* Public operations on one container hold that container's lock, so Start,
  Stop, Restart and Delete on the same name never interleave.
* Exit notifications arrive through a synchronous callback and never take the
  lock (a Stop holding the lock is waiting for exactly that exit); they only
  commit the observation and schedule what follows.
* A restart always re-checks the desired state under the lock before it
  launches, so a Stop that wins the race leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import random
import secrets
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from corral.config import OperatorConfig
from corral.core import policy, specs
from corral.core.clock import Clock, SystemClock
from corral.core.environment import MissingSecretError, build_environment, load_builder
from corral.core.errors import (
    AdHocContainerNotAllowedError,
    ContainerNotStoppedError,
    CrashLoopDetectedError,
    InvalidArgumentError,
    MinReplicaSetContainerError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from corral.core.eventhub import EventHub
from corral.core.model import (
    ContainerRecord,
    ContainerSpec,
    ContainerState,
    DesiredState,
    Event,
    EventType,
    ExitInfo,
    ExitReason,
    event_for,
)
from corral.core.tasks import cancel_all, spawn
from corral.runtimes.base import (
    ExitCallback,
    LaunchRequest,
    Runtime,
    RuntimeHandle,
    RuntimeUnavailableError,
    WorkloadStartError,
)
from corral.store import InstanceRow, Store, StoreIntegrityError

logger = logging.getLogger(__name__)

_GROUP_COMMIT_WINDOW = 0.002
"""Seconds a report waits for others to share its commit. Two milliseconds
is far below anything a workload notices and lets hundreds share a commit."""

_CACHE_LIMIT = 100_000
"""Entries kept in each in-memory lookup cache before it starts over."""

_ACTIVE_STATES = frozenset(
    {
        ContainerState.STARTING,
        ContainerState.RUNNING,
        ContainerState.STOPPING,
        # Unknown might be running: never start a second copy of it.
        ContainerState.UNKNOWN,
    }
)

_START_CONCURRENCY = 32
"""Starts a reconciliation pass keeps in flight at once (a Docker start takes
a quarter of a second; local processes start in well under a millisecond)."""

_AVAILABILITY_CHECK = 1.0
"""Seconds between looks at the runtime's reachability (a flag the runtime
keeps from its event stream; looking costs nothing)."""

_UNAVAILABLE_RETRY = timedelta(seconds=1)
"""Shortest wait before retrying a start the runtime was unreachable for."""

_STOP_MARGIN = 45.0
"""Seconds past the grace period a runtime's stop may take (the SIGKILL and
its confirmation) before corral stops waiting for it. Longer than the process
runtime's own wait after SIGKILL (30 s); the docker runtime exceeds it only on
an engine that does not answer. The stop stays recorded and is tried again."""
_STOP_RETRY_INITIAL = 1.0
_STOP_RETRY_MAX = 60.0
"""Bounds, in seconds, of the doubling wait between tries of a failed stop."""


@dataclasses.dataclass(frozen=True)
class _PendingStop:
    """A stop the runtime did not carry out, to be tried again."""

    instance_id: str
    spec: ContainerSpec
    """The spec the instance runs: its stop signal is the one to send."""
    reason: ExitReason
    attempt: int
    due: float
    """Loop time of the next try."""


@dataclasses.dataclass
class _PendingReport:
    """A workload report waiting for the next group commit."""

    name: str
    instance_id: str
    event_id: str
    kind: str
    exit_code: int | None
    message: str
    retry_after: timedelta | None
    done: asyncio.Future[tuple[int, bool]]


@dataclasses.dataclass
class ReconcileResult:
    """What one reconciliation pass found and did."""

    already_running: int = 0
    started: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    """(name, reason, message) for each member that could not run."""


class Operator:
    """Keeps the fleet's observed state converging on its desired state.

    Args:
        settings: the operator's effective settings.
        members: the min replica set declared in the fleet file.
        store: the durable store (already migrated or migrated by :meth:`open`).
        runtime_factory: builds the runtime, given the exit callback.
        advertise_addr: address workloads use to reach corral (``CORRAL_ADDR``).
        clock: wall clock; injectable for tests.
        environ: the operator's own environment, the source of secrets.
        rand: uniform random numbers in [0, 1), for backoff jitter.
    """

    def __init__(
        self,
        *,
        settings: OperatorConfig,
        members: Sequence[tuple[str, ContainerSpec]],
        store: Store,
        runtime_factory: Callable[[ExitCallback], Runtime],
        advertise_addr: str,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._members = dict(members)
        self._store = store
        self._runtime = runtime_factory(self._on_exit)
        self.advertise_addr = advertise_addr
        self._clock = clock or SystemClock()
        self._environ = dict(os.environ if environ is None else environ)
        self._rand = rand
        self._max_containers = settings.max_containers
        search_path = settings.config_file.parent if settings.config_file else None
        self._builder = (
            load_builder(settings.env_builder, search_path)
            if settings.env_builder
            else None
        )

        self._records: dict[str, ContainerRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._rearm_timers: dict[str, asyncio.TimerHandle] = {}
        self._ordered: dict[str, ExitReason] = {}
        """Instances whose end corral ordered, with the reason to record."""
        self._replace_later: dict[str, ContainerSpec] = {}
        """Members whose spec changed while their state was unknown, with
        the spec their instance still runs."""
        self._stop_retries: dict[str, _PendingStop] = {}
        """Stops the runtime did not carry out, by container name."""
        self._ended: set[str] = set()
        self._instances: dict[str, InstanceRow] = {}
        self._reports_seen: dict[str, int] = {}
        self._report_batch: dict[str, _PendingReport] = {}
        """Recently stored report ids; older ones are found by the store's
        unique index when a commit collides."""
        self._reported_exit: dict[str, int] = {}
        """Exit codes workloads reported with STOPPED, used when the runtime
        cannot observe the real one (an adopted process)."""
        self._attempts: dict[str, int] = {}
        """Consecutive restarts per container, for the backoff; starts over
        after an operator restart, which only makes the next delay shorter."""
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[None]] = set()
        """Short tasks (releases, stop retries) that close() cancels."""
        self._closing = False
        self.hub = EventHub(head=0)

    # -- lifecycle --------------------------------------------------------------

    @property
    def runtime_name(self) -> str:
        """The runtime's name: ``process`` or ``docker``."""
        return self._runtime.name

    @property
    def members(self) -> list[str]:
        """Names of the min replica set, in file order."""
        return list(self._members)

    async def open(self) -> None:
        """Loads the store, declares the fleet, adopts survivors, starts work."""
        self._store.migrate()
        self.hub = EventHub(head=self._store.head_sequence())
        self._records = {
            record.name: record for record in self._store.load_containers()
        }

        # Declare the min replica set: create new members, refresh changed specs.
        replace = self._declare_members()

        # Adopt what survived an operator restart; settle what ended meanwhile.
        for record in list(self._records.values()):
            await self._recover(record)

        await self._remove_orphans()

        # Members whose spec changed while corral was down get a new instance.
        for name, old_spec in replace.items():
            try:
                await self._replace(name, old_spec)
            except UnavailableError as error:
                # The stop is queued: the new instance starts once the
                # runtime carries it out.
                logger.warning(
                    "could not replace a changed member yet",
                    extra={"container": name, "error": error.message},
                )

        await self.reconcile()
        self._tasks.append(
            spawn(self._retention_loop(), name="event-retention", forever=True)
        )
        self._tasks.append(
            spawn(self._watch_availability(), name="runtime-availability", forever=True)
        )
        if self.settings.reconcile_interval > timedelta(0):
            self._tasks.append(
                spawn(self._reconcile_loop(), name="reconcile-loop", forever=True)
            )

    async def close(self) -> None:
        """Stops timers and watchers. Workloads keep running."""
        self._closing = True
        await cancel_all([*self._tasks, *self._background])
        for handle in [*self._timers.values(), *self._rearm_timers.values()]:
            handle.cancel()
        self._timers.clear()
        self._rearm_timers.clear()
        self.hub.close()
        await self._runtime.close()

    def _declare_members(self) -> dict[str, ContainerSpec]:
        now = self._clock.now()
        changed: list[ContainerRecord] = []
        events: list[Event] = []
        # Active members whose spec changed, with the spec they still run.
        replace: dict[str, ContainerSpec] = {}
        for name, spec in self._members.items():
            record = self._records.get(name)
            if record is None:
                record = ContainerRecord(
                    name=name,
                    spec=spec,
                    desired_state=DesiredState.RUNNING,
                    state=ContainerState.PENDING,
                    create_time=now,
                    update_time=now,
                    min_replica_set=True,
                )
                changed.append(record)
                events.append(event_for(record, EventType.CREATED, now))
                continue
            updated = dataclasses.replace(record, min_replica_set=True, spec=spec)
            if updated == record:
                continue
            updated = dataclasses.replace(updated, update_time=now)
            changed.append(updated)
            if record.spec != spec:
                events.append(event_for(updated, EventType.SPEC_UPDATED, now))
                if record.state in _ACTIVE_STATES:
                    replace[name] = record.spec
        for record in self._records.values():
            if record.min_replica_set and record.name not in self._members:
                changed.append(
                    dataclasses.replace(record, min_replica_set=False, update_time=now)
                )
        self._commit(changed, events)
        return replace

    async def _replace(self, name: str, old_spec: ContainerSpec) -> None:
        """Replaces a running instance of ``old_spec`` with one of the
        record's current spec (rule 8), stopping it as its own spec says."""
        async with self._lock(name):
            record = self._records.get(name)
            if record is None or record.desired_state is not DesiredState.RUNNING:
                return
            if record.state is ContainerState.UNKNOWN:
                # The runtime cannot tell now: replaced when it is back.
                self._replace_later[name] = old_spec
                return
            if record.state is not ContainerState.RUNNING:
                return
            await self._replace_locked(record, old_spec)

    async def _replace_locked(
        self, record: ContainerRecord, old_spec: ContainerSpec
    ) -> None:
        old = dataclasses.replace(record, spec=old_spec)
        await self._stop_instance(old, ExitReason.REPLACED)
        self._cancel_timer(record.name)
        await self._launch(record.name)

    async def _recover(self, record: ContainerRecord) -> None:
        now = self._clock.now()
        if record.state in _ACTIVE_STATES and record.instance_id:
            try:
                handle = await self._runtime.adopt(
                    record.name,
                    record.instance_id,
                    record.runtime_id,
                    record.runtime_identity,
                )
            except RuntimeUnavailableError as error:
                self._mark_unknown(record, str(error))
                return
            if handle is not None:
                adopted = dataclasses.replace(
                    record,
                    state=ContainerState.RUNNING,
                    runtime_id=handle.runtime_id,
                    runtime_identity=handle.identity,
                    started_at=record.started_at or handle.started_at,
                    update_time=now,
                )
                self._commit([adopted], [event_for(adopted, EventType.ADOPTED, now)])
                if record.desired_state is DesiredState.STOPPED:
                    # In the background: a grace period must hold up neither
                    # corral's start nor a caller holding this container's lock.
                    self._tasks.append(
                        spawn(self.stop(record.name), name=f"stop:{record.name}")
                    )
                return
            # Ended while nobody watched: its real exit if the runtime kept it.
            gone = self._runtime.last_exit(record.instance_id) or ExitInfo(
                reason=ExitReason.UNKNOWN,
                time=now,
                instance_id=record.instance_id,
                message="the workload ended while corral was not watching it",
            )
            self._observe_exit(record.name, record.instance_id, gone)
            return
        if record.state is ContainerState.BACKOFF and record.desired_state is (
            DesiredState.RUNNING
        ):
            due = record.next_restart_time or now
            self._schedule_restart(record.name, max(0.0, (due - now).total_seconds()))
        elif record.state is ContainerState.CRASH_LOOP:
            self._schedule_rearm(record)

    def _mark_unknown(self, record: ContainerRecord, why: str) -> None:
        """Records that the runtime cannot tell whether ``record`` runs."""
        if record.state is ContainerState.UNKNOWN:
            return
        now = self._clock.now()
        unknown = dataclasses.replace(
            record, state=ContainerState.UNKNOWN, ready=False, update_time=now
        )
        message = (
            f"the runtime is unreachable ({why}); corral re-checks when it returns"
        )
        self._commit(
            [unknown], [event_for(unknown, EventType.UNKNOWN, now, message=message)]
        )
        logger.warning(
            "container state unknown", extra={"container": record.name, "error": why}
        )

    async def _watch_availability(self) -> None:
        """Follows the runtime's reachability: while it is away the running
        containers are unknown; when it is back they are settled again."""
        was_available = self._runtime.available
        while True:
            await asyncio.sleep(_AVAILABILITY_CHECK)
            available = self._runtime.available
            if available and self._stop_retries:
                now = asyncio.get_running_loop().time()
                for name, pending in sorted(self._stop_retries.items()):
                    if pending.due <= now:
                        del self._stop_retries[name]
                        self._spawn_background(
                            self._retry_stop(name, pending), name=f"retry-stop:{name}"
                        )
            if available == was_available:
                continue
            was_available = available
            if not available:
                for record in list(self._records.values()):
                    if record.state in (
                        ContainerState.RUNNING,
                        ContainerState.STARTING,
                    ):
                        self._mark_unknown(record, "lost the connection")
                continue
            # Unknown containers, and stops the outage interrupted.
            for name in [r.name for r in self._records.values() if _unsettled(r)]:
                async with self._lock(name):
                    current = self._records.get(name)
                    if current is not None and _unsettled(current):
                        await self._settle_unknown(current)

    async def _retry_stop(self, name: str, pending: _PendingStop) -> None:
        """Tries a stop the runtime did not carry out again, then starts the
        instance that a replacement, Restart or Start was waiting to start."""
        async with self._lock(name):
            current = self._records.get(name)
            if (
                self._closing
                or current is None
                or current.instance_id != pending.instance_id
            ):
                return  # Deleted, or a new instance runs already.
            if self._is_active(current):
                if self._runtime.is_running(name, current.instance_id):
                    old = dataclasses.replace(current, spec=pending.spec)
                    try:
                        # The polite signal had its grace already.
                        await self._stop_instance(old, pending.reason, timedelta(0))
                    except UnavailableError:
                        return  # Queued again, for later.
                elif _unsettled(current):
                    with contextlib.suppress(UnavailableError):
                        await self._settle_unknown(current)
                current = self._records[name]
                if current.instance_id == pending.instance_id and self._is_active(
                    current
                ):
                    # Let go of by the runtime, its exit not yet seen: later.
                    old = dataclasses.replace(current, spec=pending.spec)
                    self._queue_stop_retry(old, pending.reason)
                    return

            # Its end is recorded as the ordered stop: start what it was for.
            if (
                current.instance_id == pending.instance_id
                and current.state is ContainerState.STOPPED
                and current.desired_state is DesiredState.RUNNING
                and name not in self._timers
                and not self._closing
            ):
                await self._launch(name)

    def _spawn_background(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        task = spawn(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle_unknown(self, record: ContainerRecord) -> None:
        """A container whose state was unknown (or whose stop an outage
        interrupted), once the runtime is back."""
        if record.state is ContainerState.STOPPING and self._runtime.is_running(
            record.name, record.instance_id
        ):
            with contextlib.suppress(UnavailableError):
                await self._stop_instance(record, ExitReason.STOPPED_BY_OPERATOR)
            return
        old_spec = self._replace_later.pop(record.name, None)
        if self._runtime.is_running(record.name, record.instance_id):
            now = self._clock.now()
            current = dataclasses.replace(
                record, state=ContainerState.RUNNING, update_time=now
            )
            message = "the runtime is reachable again"
            self._commit(
                [current],
                [event_for(current, EventType.RUNNING, now, message=message)],
            )
            if current.desired_state is DesiredState.STOPPED:
                with contextlib.suppress(UnavailableError):  # Queued again.
                    await self._stop_instance(current, ExitReason.STOPPED_BY_OPERATOR)
                return
        else:
            # Adopted now (a stop it owes is taken care of by adoption), or
            # ended meanwhile and handled by its policy.
            await self._recover(record)
            current = self._records[record.name]
        if (
            old_spec is not None
            and current.instance_id == record.instance_id
            and current.state is ContainerState.RUNNING
            and current.desired_state is DesiredState.RUNNING
        ):
            # Its spec changed while the runtime could not be reached.
            with contextlib.suppress(UnavailableError):  # Queued again.
                await self._replace_locked(current, old_spec)

    async def _remove_orphans(self) -> None:
        """Removes workloads of corral's that no record knows (reported as
        events): an operator that died between starting one and recording
        it must not leave a second copy running."""
        known = {r.instance_id for r in self._records.values() if r.instance_id}
        try:
            orphans = await self._runtime.orphans(known)
        except RuntimeUnavailableError as error:
            logger.warning("cannot list orphans", extra={"error": str(error)})
            return
        for orphan in orphans:
            try:
                await self._runtime.remove(orphan.runtime_id)
            except RuntimeUnavailableError as error:
                logger.warning(
                    "cannot remove an orphan",
                    extra={"runtime_id": orphan.runtime_id, "error": str(error)},
                )
                continue
            now = self._clock.now()
            event = Event(
                type=EventType.ORPHAN_REMOVED,
                name=orphan.name,
                time=now,
                state=ContainerState.UNKNOWN,
                instance_id=orphan.instance_id,
                message=(
                    f"removed {orphan.runtime_id}, a workload of instance "
                    f"{orphan.instance_id} that no record knows"
                ),
            )
            self._commit([], [event])
            logger.warning(
                "removed an orphan",
                extra={"container": orphan.name, "runtime_id": orphan.runtime_id},
            )

    # -- queries -------------------------------------------------------------

    def get(self, name: str) -> ContainerRecord:
        """Returns one container's record.

        Raises:
            NotFoundError: no container has that name.
        """
        record = self._records.get(name)
        if record is None:
            raise NotFoundError(
                f"container {name!r} not found; ListContainers (corral ls) shows "
                "the known names",
                resource_name=name,
            )
        return record

    def list_containers(self) -> list[ContainerRecord]:
        """All records in name order."""
        return [self._records[name] for name in sorted(self._records)]

    def crash_loop(self, record: ContainerRecord) -> policy.CrashLoopStatus:
        """The crash-loop breaker's state for ``record`` now."""
        return policy.crash_loop_status(
            record.crash_history, record.spec.restart_policy.crash, self._clock.now()
        )

    def list_events(
        self, *, after: int, limit: int, names: Sequence[str] = ()
    ) -> list[Event]:
        """Reads the event log after a sequence."""
        return self._store.list_events(after=after, limit=limit, names=names)

    def oldest_sequence(self) -> int:
        """The oldest sequence still in the event log."""
        return self._store.oldest_sequence()

    # -- operations ----------------------------------------------------------

    async def start(
        self,
        name: str,
        spec: ContainerSpec | None = None,
        *,
        force: bool = False,
        request_id: str = "",
    ) -> ContainerRecord:
        """Creates, updates or starts a container (StartContainer).

        Raises:
            InvalidArgumentError: bad name or spec.
            NotFoundError: no spec given and no such container.
            AdHocContainerNotAllowedError: ad-hoc containers are disabled.
            CrashLoopDetectedError: crash looping and ``force`` is not set.
        """
        self._check_name(name)
        if spec is not None:
            specs.validate_spec_or_raise(spec, runtime=self.runtime_name)
        self._check_open()
        async with self._lock(name):
            record = self._records.get(name)
            now = self._clock.now()

            # A retried request with the same id changes nothing.
            if (
                record is not None
                and request_id
                and record.last_request_id == request_id
            ):
                return record

            # The crash-loop breaker refuses unless forced, before anything
            # is stored: a refused call changes nothing.
            if record is not None:
                candidate = (
                    record if spec is None else dataclasses.replace(record, spec=spec)
                )
                status = self.crash_loop(candidate)
                if status.active and not force:
                    raise _crash_loop_error(candidate, status)

            # Create the record, or refresh its spec, before anything runs.
            replacing = False
            running = record
            if record is None:
                record = self._create(name, spec, now)
            elif spec is not None and spec != record.spec:
                replacing = self._is_active(record)
                record = dataclasses.replace(record, spec=spec, update_time=now)
                self._commit([record], [event_for(record, EventType.SPEC_UPDATED, now)])

            # Already running this spec: only the intent may need recording.
            if self._is_active(record) and not replacing:
                if record.desired_state is not DesiredState.RUNNING or request_id:
                    record = dataclasses.replace(
                        record,
                        desired_state=DesiredState.RUNNING,
                        last_request_id=request_id or record.last_request_id,
                        update_time=now,
                    )
                    self._commit([record], [])
                return self._records[name]

            # Store the intent first, then act.
            record = dataclasses.replace(
                record,
                desired_state=DesiredState.RUNNING,
                last_request_id=request_id or record.last_request_id,
                update_time=now,
            )
            self._commit([record], [])
            if replacing and running is not None:
                # The old instance stops the way its own spec says.
                old = dataclasses.replace(record, spec=running.spec)
                await self._stop_instance(old, ExitReason.REPLACED)
            self._cancel_timer(name)
            await self._launch(name)
            return self._records[name]

    async def stop(
        self, name: str, grace_period: timedelta | None = None
    ) -> ContainerRecord:
        """Stops a container and keeps it stopped (StopContainer)."""
        self._check_name(name)
        async with self._lock(name):
            record = self.get(name)
            now = self._clock.now()

            # The intent is durable before any signal is sent.
            self._cancel_timer(name)
            active = self._is_active(record)
            state = ContainerState.STOPPING if active else ContainerState.STOPPED
            stopped = dataclasses.replace(
                record,
                desired_state=DesiredState.STOPPED,
                state=state,
                next_restart_time=None,
                update_time=now,
            )
            event_type = EventType.STOPPING if active else EventType.STOPPED
            if stopped != dataclasses.replace(record, update_time=now):
                self._commit([stopped], [event_for(stopped, event_type, now)])

            if active:
                await self._stop_instance(
                    stopped, ExitReason.STOPPED_BY_OPERATOR, grace_period
                )
            return self._records[name]

    async def restart(self, name: str) -> ContainerRecord:
        """Stops the current instance, if any, and starts a new one."""
        self._check_name(name)
        self._check_open()
        async with self._lock(name):
            record = self.get(name)
            status = self.crash_loop(record)
            if status.active:
                raise _crash_loop_error(record, status)
            now = self._clock.now()
            record = dataclasses.replace(
                record, desired_state=DesiredState.RUNNING, update_time=now
            )
            self._commit([record], [])
            self._cancel_timer(name)
            if self._is_active(record):
                await self._stop_instance(record, ExitReason.STOPPED_BY_OPERATOR)
            await self._launch(name)
            return self._records[name]

    async def delete(self, name: str) -> None:
        """Deletes a stopped, ad-hoc container (DeleteContainer)."""
        self._check_name(name)
        async with self._lock(name):
            record = self.get(name)
            if record.min_replica_set:
                raise MinReplicaSetContainerError(
                    f"container {name!r} is in the min replica set declared in the "
                    "fleet file and cannot be deleted; remove it from the file and "
                    "restart corral, or stop it with StopContainer "
                    f"(corral stop {name})",
                    resource_name=name,
                )
            if self._is_active(record) or name in self._timers:
                raise ContainerNotStoppedError(
                    f"container {name!r} is {record.state.value}; stop it with "
                    f"StopContainer (corral stop {name}), then delete it",
                    resource_name=name,
                )
            now = self._clock.now()
            gone = dataclasses.replace(record, update_time=now)
            self._commit([], [event_for(gone, EventType.DELETED, now)], deleted=[name])
            self._cancel_rearm(name)
            self._attempts.pop(name, None)
            self._stop_retries.pop(name, None)
            # The store dropped its instances; their tokens go with them.
            for token_hash in [
                h for h, row in self._instances.items() if row.name == name
            ]:
                del self._instances[token_hash]

    async def clear_crash_history(self, name: str) -> ContainerRecord:
        """Forgets the crash history, re-arming the breaker; a crash-looping
        container that should run is started at once."""
        self._check_name(name)
        async with self._lock(name):
            record = self.get(name)
            now = self._clock.now()
            looping = record.state is ContainerState.CRASH_LOOP
            state = ContainerState.EXITED if looping else record.state
            cleared = dataclasses.replace(
                record, crash_history=(), state=state, update_time=now
            )
            self._commit(
                [cleared], [event_for(cleared, EventType.CRASH_HISTORY_CLEARED, now)]
            )
            self._cancel_rearm(name)
            self._attempts.pop(name, None)
            if looping and cleared.desired_state is DesiredState.RUNNING:
                self._check_open()
                await self._launch(name)
            return self._records[name]

    async def reconcile(self) -> ReconcileResult:
        """One pass over the min replica set (rule 7 of the design)."""
        result = ReconcileResult()
        to_start: list[str] = []
        for name in list(self._members):
            if self._closing:
                break
            if await self._reconcile_one(name, result):
                to_start.append(name)

        # Start what needs starting together: one commit for all the new
        # instances, the runtime's starts side by side, one commit after.
        await self._launch_many(to_start)
        for name in to_start:
            record = self._records.get(name)
            if record is not None and self._is_active(record):
                result.started.append(name)
            elif record is not None:
                last = record.last_exit
                message = last.message if last else "start failed"
                result.failed.append((name, "START_FAILED", message))
        return result

    async def _reconcile_one(self, name: str, result: ReconcileResult) -> bool:
        """Classifies one member; True when it should be started."""
        async with self._lock(name):
            record = self._records.get(name)
            if record is None:
                return False

            # Drift: recorded as running, but the workload is gone.
            if record.state is ContainerState.RUNNING and not self._runtime.is_running(
                name, record.instance_id
            ):
                self._observe_exit(
                    name,
                    record.instance_id,
                    ExitInfo(
                        reason=ExitReason.UNKNOWN,
                        time=self._clock.now(),
                        instance_id=record.instance_id,
                        message="the workload disappeared without an observed exit",
                    ),
                )
                record = self._records[name]

            if record.desired_state is DesiredState.STOPPED or (
                record.state is ContainerState.UNKNOWN
            ):
                result.skipped.append(name)
                return False
            if self._is_active(record):
                result.already_running += 1
                return False
            if name in self._timers:
                result.skipped.append(name)
                return False

            status = self.crash_loop(record)
            if status.active:
                error = _crash_loop_error(record, status)
                result.failed.append((name, error.reason, error.message))
                return False
            if record.state is ContainerState.CRASH_LOOP:
                self._rearm(record)
            elif record.state in (
                ContainerState.EXITED,
                ContainerState.FAILED,
            ) and not self._restarts_after(record):
                result.skipped.append(name)
                return False
            return True

    async def report(
        self,
        *,
        token: str,
        name: str,
        instance_id: str,
        event_id: str,
        kind: str,
        exit_code: int | None = None,
        message: str = "",
        retry_after: timedelta | None = None,
    ) -> tuple[int, bool]:
        """Records a workload's own lifecycle report (LifecycleService).

        Args:
            token: the per-instance token the workload was given.
            kind: ``STARTED``, ``STOPPED`` or ``ERROR``.

        Returns:
            (sequence of the event recording it, whether it was a duplicate).

        Raises:
            UnauthenticatedError: no token, or not one corral issued.
            PermissionDeniedError: the token belongs to another container or
                instance.
        """
        if not token:
            raise UnauthenticatedError(
                "ReportEvent needs the workload's token as 'authorization: Bearer "
                "<CORRAL_TOKEN>' metadata"
            )
        instance = self._find_instance(hash_token(token))
        if instance is None:
            raise UnauthenticatedError(
                "the token is not one corral issued; use the CORRAL_TOKEN of this "
                "instance's environment"
            )
        if instance.name != name or instance.instance_id != instance_id:
            raise PermissionDeniedError(
                f"this token reports only for container {instance.name!r}, instance "
                f"{instance.instance_id!r}",
                resource_name=name,
            )

        # A retried report is answered from the log, never stored twice. The
        # id is the client's choice, so it only names a retry within the
        # instance that sent it; other workloads may pick the same id.
        event_id = f"{instance_id}/{event_id}"
        seen = self._reports_seen.get(event_id)
        if seen is not None:
            return seen, True
        pending = self._report_batch.get(event_id)
        if pending is not None:
            sequence, _ = await asyncio.shield(pending.done)
            return sequence, True

        # Reports arriving together commit together (group commit); each
        # caller is answered once its report is durable.
        report = _PendingReport(
            name=name,
            instance_id=instance_id,
            event_id=event_id,
            kind=kind,
            exit_code=exit_code,
            message=message,
            retry_after=retry_after,
            done=asyncio.get_running_loop().create_future(),
        )
        self._report_batch[event_id] = report
        if len(self._report_batch) == 1:
            spawn(self._gather_reports(), name="report-group-commit")
        return await asyncio.shield(report.done)

    async def _gather_reports(self) -> None:
        """Lets the reports on their way join the batch, then commits: a
        busy fleet shares one commit among many reports, at the cost of a
        short wait for each."""
        await asyncio.sleep(_GROUP_COMMIT_WINDOW)
        self._flush_reports()

    def _flush_reports(self) -> None:
        """Commits every pending report in one transaction.

        No lock: nothing here awaits, so the change is atomic on the loop, and
        a Stop holding a container's lock must still hear its last word.
        """
        batch = list(self._report_batch.values())
        self._report_batch.clear()
        try:
            self._commit_reports(batch)
        except StoreIntegrityError:
            # Some report was stored before this operator process started;
            # commit them one by one so each is answered on its own.
            for report in batch:
                if not report.done.done():
                    self._commit_reports_safely([report])
        except Exception as error:
            for report in batch:
                if not report.done.done():
                    report.done.set_exception(error)

    def _commit_reports_safely(self, batch: list[_PendingReport]) -> None:
        try:
            self._commit_reports(batch)
        except StoreIntegrityError as error:
            seen = self._store.report_seen(batch[0].event_id)
            if seen is None:
                batch[0].done.set_exception(error)
            else:
                batch[0].done.set_result((seen, True))
        except Exception as error:
            batch[0].done.set_exception(error)

    def _commit_reports(self, batch: list[_PendingReport]) -> None:
        now = self._clock.now()
        working: dict[str, ContainerRecord] = {}
        events: list[Event] = []
        ids: list[tuple[str, int]] = []
        exits: dict[str, int] = {}
        for report in batch:
            record = working.get(report.name) or self._records.get(report.name)
            if record is None:
                report.done.set_exception(
                    NotFoundError(
                        f"container {report.name!r} was deleted",
                        resource_name=report.name,
                    )
                )
                continue
            updated, event, exit_code = self._apply_report(record, report, now)
            if updated is not record:
                working[report.name] = updated
            if exit_code is not None:
                exits[report.instance_id] = exit_code
            ids.append((report.event_id, len(events)))
            events.append(event)
        if not events:
            return

        committed = self._commit(list(working.values()), events, reports=ids)
        self._reported_exit.update(exits)
        answered = {event_id: committed[index].sequence for event_id, index in ids}
        for report in batch:
            if not report.done.done():
                self._remember_report(report.event_id, answered[report.event_id])
                report.done.set_result((answered[report.event_id], False))

    def _apply_report(
        self, record: ContainerRecord, report: _PendingReport, now: datetime
    ) -> tuple[ContainerRecord, Event, int | None]:
        """The record and event a report leads to (and a reported exit code)."""
        kind, message = report.kind, report.message
        text = f"{kind}: {message}" if message else kind
        if report.exit_code is not None:
            text += f" (exit code {report.exit_code})"

        # A report about an older instance is recorded and changes nothing.
        current = record.instance_id == report.instance_id and self._is_active(record)
        updated = record
        event_type = EventType.REPORTED
        exit_code = None
        if current and kind == "STARTED":
            updated = dataclasses.replace(record, ready=True, update_time=now)
            event_type = EventType.READY
        elif current and kind == "ERROR":
            updated = dataclasses.replace(
                record,
                pending_error=message or "the workload reported an error",
                retry_after=report.retry_after,
                update_time=now,
            )
        elif current and kind == "STOPPED":
            exit_code = report.exit_code
        if not current:
            text += " (about an instance that is no longer current)"

        event = dataclasses.replace(
            event_for(updated, event_type, now, message=text),
            instance_id=report.instance_id,
        )
        return updated, event, exit_code

    def _find_instance(self, token_hash: str) -> InstanceRow | None:
        """The instance a token belongs to; instances never change, so found
        ones are remembered."""
        instance = self._instances.get(token_hash)
        if instance is None:
            instance = self._store.find_instance(token_hash)
            if instance is not None:
                if len(self._instances) >= _CACHE_LIMIT:
                    self._instances.clear()
                self._instances[token_hash] = instance
        return instance

    def _remember_report(self, event_id: str, sequence: int) -> None:
        if len(self._reports_seen) >= _CACHE_LIMIT:
            self._reports_seen.clear()
        self._reports_seen[event_id] = sequence

    # -- launching and stopping ---------------------------------------------------

    async def _launch(self, name: str) -> None:
        """Starts a new instance of ``name``; the caller holds its lock."""
        record = self._records.get(name)
        if record is None or record.desired_state is not DesiredState.RUNNING:
            return
        if self._closing:
            return
        now = self._clock.now()
        self._timers.pop(name, None)

        # Record the new instance before it exists, so a crash of corral
        # between here and the next commit can still find and adopt it.
        starting, instance, token = self._prepare_instance(record, now)
        self._commit(
            [starting],
            [event_for(starting, EventType.STARTING, now)],
            instances=[instance],
        )
        await self._start_instance(name, starting.instance_id, token)

    async def _start_prepared(self, name: str, instance_id: str, token: str) -> None:
        """Starts an instance whose STARTING record is already committed."""
        async with self._lock(name):
            record = self._records.get(name)
            # A Stop, Delete or shutdown since the commit wins.
            if (
                self._closing
                or record is None
                or record.instance_id != instance_id
                or record.state is not ContainerState.STARTING
                or record.desired_state is not DesiredState.RUNNING
            ):
                return
            await self._start_instance(name, instance_id, token)

    def _prepare_instance(
        self, record: ContainerRecord, now: datetime
    ) -> tuple[ContainerRecord, InstanceRow, str]:
        """The STARTING record of a new instance, its row and its token."""
        instance_id = uuid.uuid4().hex
        token = secrets.token_urlsafe(32)
        starting = dataclasses.replace(
            record,
            state=ContainerState.STARTING,
            instance_id=instance_id,
            runtime_id="",
            runtime_identity="",
            ready=False,
            next_restart_time=None,
            started_at=None,
            pending_error="",
            retry_after=None,
            update_time=now,
        )
        instance = InstanceRow(
            instance_id=instance_id,
            name=record.name,
            token_hash=hash_token(token),
            created=now,
        )
        return starting, instance, token

    async def _launch_many(self, names: Sequence[str]) -> None:
        """Starts new instances of ``names`` as one batch (reconciliation)."""
        if not names or self._closing:
            return
        async with contextlib.AsyncExitStack() as locks:
            for name in names:
                await locks.enter_async_context(self._lock(name))

            # Record every new instance first, in one commit.
            now = self._clock.now()
            starting: list[ContainerRecord] = []
            instances: list[InstanceRow] = []
            tokens: list[tuple[str, str, str]] = []
            for name in names:
                record = self._records.get(name)
                if (
                    record is None
                    or record.desired_state is not DesiredState.RUNNING
                    or self._is_active(record)
                    or name in self._timers
                ):
                    continue
                prepared, instance, token = self._prepare_instance(record, now)
                starting.append(prepared)
                instances.append(instance)
                tokens.append((name, prepared.instance_id, token))
            self._commit(
                starting,
                [event_for(r, EventType.STARTING, now) for r in starting],
                instances=instances,
            )

            # Start them side by side, a bounded number at a time.
            gate = asyncio.Semaphore(_START_CONCURRENCY)

            async def run(
                name: str, instance_id: str, token: str
            ) -> RuntimeHandle | None:
                async with gate:
                    return await self._run_instance(name, instance_id, token)

            handles = await asyncio.gather(*(run(*entry) for entry in tokens))

            # Record them running in one commit; skip any that ended already.
            running = []
            for (name, instance_id, _), handle in zip(tokens, handles, strict=True):
                if handle is None:
                    continue
                record = self._running_record(name, instance_id, handle)
                if record is not None:
                    running.append(record)
            self._commit(
                running,
                [event_for(r, EventType.RUNNING, r.update_time) for r in running],
            )

    def _running_record(
        self, name: str, instance_id: str, handle: RuntimeHandle
    ) -> ContainerRecord | None:
        """The current record marked running, or None when the instance
        already ended or was replaced. Built from the record as it is now,
        so a report that arrived during the start is kept."""
        if instance_id in self._ended:
            self._ended.discard(instance_id)
            return None
        current = self._records.get(name)
        if current is None or current.instance_id != instance_id:
            return None
        return dataclasses.replace(
            current,
            state=ContainerState.RUNNING,
            runtime_id=handle.runtime_id,
            runtime_identity=handle.identity,
            started_at=handle.started_at,
            update_time=self._clock.now(),
        )

    async def _start_instance(self, name: str, instance_id: str, token: str) -> None:
        """Hands a prepared instance to the runtime and records it running;
        the caller holds the lock."""
        handle = await self._run_instance(name, instance_id, token)
        if handle is None:
            return
        running = self._running_record(name, instance_id, handle)
        if running is not None:
            self._commit(
                [running], [event_for(running, EventType.RUNNING, running.update_time)]
            )

    async def _run_instance(
        self, name: str, instance_id: str, token: str
    ) -> RuntimeHandle | None:
        """Hands a prepared instance to the runtime; returns its handle, or
        None when it did not start (that is recorded already)."""
        record = self._records[name]
        try:
            env = build_environment(
                name=name,
                instance_id=instance_id,
                spec=record.spec,
                operator_environ=self._environ,
                builder=self._builder,
                name_key=self.settings.container_name_env_key,
                addr=self.advertise_addr,
                token=token,
            )
            handle = await self._runtime.start(
                LaunchRequest(
                    name=name, instance_id=instance_id, spec=record.spec, env=env
                )
            )
        except RuntimeUnavailableError as error:
            self._defer_start(name, instance_id, str(error))
            return None
        except (WorkloadStartError, MissingSecretError) as error:
            failed = ExitInfo(
                reason=ExitReason.FAILED_TO_START,
                time=self._clock.now(),
                instance_id=instance_id,
                message=str(error),
            )
            logger.info(
                "container failed to start",
                extra={"container": name, "instance": instance_id, "error": str(error)},
            )
            self._observe_exit(name, instance_id, failed)
            return None

        logger.info(
            "container started",
            extra={
                "container": name,
                "instance": instance_id,
                "runtime_id": handle.runtime_id,
            },
        )
        return handle

    def _defer_start(self, name: str, instance_id: str, why: str) -> None:
        """The runtime could not be reached to start an instance: no crash,
        just another try after the backoff delay."""
        record = self._records.get(name)
        if record is None or record.instance_id != instance_id:
            return
        self._ended.add(instance_id)
        now = self._clock.now()
        backoff = record.spec.restart_policy.backoff
        attempt = self._attempts.get(name, -1) + 1
        self._attempts[name] = attempt
        delay = policy.backoff_delay(backoff, attempt, self._rand())
        delay = max(delay, _UNAVAILABLE_RETRY)
        waiting = dataclasses.replace(
            record,
            state=ContainerState.BACKOFF,
            runtime_id="",
            next_restart_time=now + delay,
            update_time=now,
        )
        message = f"the runtime is unreachable ({why}); retrying in {_readable(delay)}"
        self._commit(
            [waiting], [event_for(waiting, EventType.BACKOFF, now, message=message)]
        )
        self._forget_instance(instance_id)
        self._schedule_restart(name, delay.total_seconds())

    async def _stop_instance(
        self,
        record: ContainerRecord,
        reason: ExitReason,
        grace_period: timedelta | None = None,
    ) -> None:
        """Ends the current instance on corral's order; never counted as a crash."""
        if not record.instance_id:
            return
        self._ordered[record.instance_id] = reason
        grace = (
            grace_period if grace_period is not None else record.spec.stop_grace_period
        )
        deadline = grace.total_seconds() + _STOP_MARGIN
        try:
            async with asyncio.timeout(deadline):
                await self._runtime.stop(
                    record.name,
                    record.instance_id,
                    specs.signal_number(record.spec.stop_signal),
                    grace.total_seconds(),
                )
        except TimeoutError as error:
            if record.instance_id in self._ended:
                return  # It did end; only confirming it was slow.
            self._queue_stop_retry(record, reason)
            raise UnavailableError(
                f"the runtime did not confirm the stop of {record.name!r} within "
                f"{deadline:g} s; the stop is recorded and tried again until it "
                "is carried out",
                resource_name=record.name,
            ) from error
        except RuntimeUnavailableError as error:
            # The intent is stored; the stop completes when the runtime is back.
            self._queue_stop_retry(record, reason)
            raise UnavailableError(
                f"the runtime is unreachable ({error}); the stop of "
                f"{record.name!r} is recorded and is carried out when it returns",
                resource_name=record.name,
            ) from error
        # A runtime that lost the instance without an exit still settles it.
        current = self._records.get(record.name)
        if (
            current is not None
            and current.instance_id == record.instance_id
            and (self._is_active(current))
        ):
            self._observe_exit(
                record.name,
                record.instance_id,
                ExitInfo(
                    reason=reason,
                    time=self._clock.now(),
                    instance_id=record.instance_id,
                ),
            )

    def _queue_stop_retry(self, record: ContainerRecord, reason: ExitReason) -> None:
        """Queues another try of a stop, after a doubling wait."""
        previous = self._stop_retries.get(record.name)
        attempt = 0
        if previous is not None and previous.instance_id == record.instance_id:
            attempt = previous.attempt + 1
        delay = min(_STOP_RETRY_INITIAL * 2**attempt, _STOP_RETRY_MAX)
        self._stop_retries[record.name] = _PendingStop(
            instance_id=record.instance_id,
            spec=record.spec,
            reason=reason,
            attempt=attempt,
            due=asyncio.get_running_loop().time() + delay,
        )

    # -- observing exits ---------------------------------------------------------

    def _on_exit(self, name: str, instance_id: str, exit: ExitInfo) -> None:
        """Runtime callback: an instance ended."""
        try:
            self._observe_exit(name, instance_id, exit)
        except Exception:
            logger.exception(
                "could not record an exit",
                extra={"container": name, "instance": instance_id},
            )

    def _observe_exit(self, name: str, instance_id: str, exit: ExitInfo) -> None:
        """Records how an instance ended and decides what follows (rules 1-5)."""
        record = self._records.get(name)
        if (
            record is None
            or record.instance_id != instance_id
            or (instance_id in self._ended)
        ):
            logger.debug(
                "exit of an instance that is not current",
                extra={"container": name, "instance": instance_id},
            )
            return
        self._ended.add(instance_id)
        now = self._clock.now()
        # The operator's clock is the one windows are measured on.
        exit = dataclasses.replace(exit, instance_id=instance_id, time=now)

        # A stop that failed and is queued has happened after all: what it
        # was waiting to do (start the new instance) is due now.
        pending = self._stop_retries.get(name)
        if pending is not None and pending.instance_id == instance_id:
            self._stop_retries[name] = dataclasses.replace(pending, due=0.0)

        # Rule 1: stops corral ordered are never crashes.
        ordered = self._ordered.pop(instance_id, None)
        reported = self._reported_exit.pop(instance_id, None)
        if ordered is not None or record.desired_state is DesiredState.STOPPED:
            exit = dataclasses.replace(
                exit, reason=ordered or ExitReason.STOPPED_BY_OPERATOR
            )
            state = (
                ContainerState.STOPPED
                if record.desired_state is DesiredState.STOPPED or ordered is not None
                else record.state
            )
            stopped = dataclasses.replace(
                record,
                state=state,
                ready=False,
                last_exit=exit,
                runtime_id="",
                update_time=now,
            )
            self._commit(
                [stopped], [event_for(stopped, EventType.STOPPED, now, exit=exit)]
            )
            self._forget_instance(instance_id)
            if record.desired_state is DesiredState.STOPPED:
                self._release(name)
            return

        # An exit the runtime could not see takes the code the workload reported.
        if exit.reason is ExitReason.UNKNOWN and reported is not None:
            exit = dataclasses.replace(
                exit, reason=ExitReason.EXITED, exit_code=reported
            )

        # Rule 2: an unexpected stop; the workload's own error report wins.
        if record.pending_error:
            exit = dataclasses.replace(
                exit, reason=ExitReason.WORKLOAD_ERROR, message=record.pending_error
            )
        restart_policy = record.spec.restart_policy
        failure = policy.is_failure(exit, restart_policy)

        # Rule 4: every unexpected stop enters the crash history.
        history = policy.trim_history(
            (*record.crash_history, exit), restart_policy.crash, now
        )
        status = policy.crash_loop_status(history, restart_policy.crash, now)
        uptime = now - record.started_at if record.started_at else None
        exited = dataclasses.replace(
            record,
            ready=False,
            last_exit=exit,
            crash_history=history,
            runtime_id="",
            update_time=now,
        )
        events = [event_for(exited, EventType.EXITED, now, exit=exit)]
        if exit.reason is ExitReason.FAILED_TO_START:
            events = [event_for(exited, EventType.START_FAILED, now, exit=exit)]

        # Rule 3: the policy decides; the breaker can veto.
        if not policy.should_restart(restart_policy, failure):
            final = (
                ContainerState.FAILED
                if exit.reason is ExitReason.FAILED_TO_START
                else ContainerState.EXITED
            )
            done = dataclasses.replace(exited, state=final)
            self._commit([done], [dataclasses.replace(e, state=final) for e in events])
            self._forget_instance(instance_id)
            self._release(name)
            return
        if status.active:
            looping = dataclasses.replace(exited, state=ContainerState.CRASH_LOOP)
            message = (
                f"{_stops(status.count)} within "
                f"{specs.format_duration(restart_policy.crash.window)}; "
                f"run ClearCrashHistory (corral clear-crashes {name}) to start it now"
            )
            events = [
                dataclasses.replace(e, state=ContainerState.CRASH_LOOP) for e in events
            ]
            events.append(
                event_for(looping, EventType.CRASH_LOOP, now, message=message)
            )
            self._commit([looping], events)
            self._forget_instance(instance_id)
            self._schedule_rearm(looping)
            logger.warning(
                "container is crash looping",
                extra={"container": name, "crashes": status.count},
            )
            return

        # Rule 5: wait out the backoff, then start a new instance.
        attempt = policy.next_attempt(
            self._attempts.get(name, -1), uptime, restart_policy.backoff
        )
        self._attempts[name] = attempt
        delay = policy.backoff_delay(restart_policy.backoff, attempt, self._rand())
        if record.retry_after is not None:
            delay = policy.clamp_retry_after(record.retry_after, restart_policy.backoff)
        if delay <= timedelta(0) and not self._closing:
            # No delay: the exit and the new instance commit together, and the
            # start follows at once (the restart hot path).
            restarted = dataclasses.replace(
                exited, restart_count=record.restart_count + 1
            )
            starting, instance, token = self._prepare_instance(restarted, now)
            events = [
                dataclasses.replace(e, state=ContainerState.STARTING) for e in events
            ]
            events.append(event_for(starting, EventType.STARTING, now))
            self._commit([starting], events, instances=[instance])
            self._forget_instance(instance_id)
            spawn(
                self._start_prepared(name, starting.instance_id, token),
                name=f"start:{name}",
            )
            return
        waiting = dataclasses.replace(
            exited,
            state=ContainerState.BACKOFF,
            restart_count=record.restart_count + 1,
            next_restart_time=now + delay,
        )
        events = [dataclasses.replace(e, state=ContainerState.BACKOFF) for e in events]
        events.append(
            event_for(
                waiting,
                EventType.BACKOFF,
                now,
                message=f"restarting in {_readable(delay)}",
            )
        )
        self._commit([waiting], events)
        self._forget_instance(instance_id)
        self._schedule_restart(name, delay.total_seconds())

    def _release(self, name: str) -> None:
        """Lets the runtime free what it keeps for a container that stopped
        for good (the docker runtime's network sandbox and host ports)."""
        if self._closing:
            return
        self._spawn_background(self._release_now(name), name=f"release:{name}")

    async def _release_now(self, name: str) -> None:
        try:
            await self._runtime.release(name)
        except RuntimeUnavailableError as error:
            logger.info(
                "runtime kept what it holds for a stopped container",
                extra={"container": name, "error": str(error)},
            )

    def _forget_instance(self, instance_id: str) -> None:
        # Keep the id in _ended only while _launch may still be returning.
        loop = asyncio.get_running_loop()
        loop.call_later(60, self._ended.discard, instance_id)

    # -- timers --------------------------------------------------------------

    def _schedule_restart(self, name: str, delay: float) -> None:
        self._cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self._restart_due, name)

    def _restart_due(self, name: str) -> None:
        handle = self._timers.get(name)
        if handle is None or self._closing:
            return
        spawn(self._restart_now(name, handle), name=f"restart:{name}")

    async def _restart_now(self, name: str, handle: asyncio.TimerHandle) -> None:
        async with self._lock(name):
            # A Stop, Start or Delete since the timer fired wins.
            if self._timers.get(name) is not handle:
                return
            record = self._records.get(name)
            if record is None or record.state is not ContainerState.BACKOFF:
                self._timers.pop(name, None)
                return
            await self._launch(name)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _schedule_rearm(self, record: ContainerRecord) -> None:
        self._cancel_rearm(record.name)
        status = self.crash_loop(record)
        if not status.active or status.rearm_time is None:
            delay = 0.0
        else:
            delay = max(0.0, (status.rearm_time - self._clock.now()).total_seconds())
        loop = asyncio.get_running_loop()
        self._rearm_timers[record.name] = loop.call_later(
            delay,
            lambda: spawn(self._rearm_due(record.name), name=f"rearm:{record.name}"),
        )

    async def _rearm_due(self, name: str) -> None:
        self._rearm_timers.pop(name, None)
        if self._closing:
            return
        async with self._lock(name):
            record = self._records.get(name)
            if record is None or record.state is not ContainerState.CRASH_LOOP:
                return
            if self.crash_loop(record).active:
                self._schedule_rearm(record)
                return
            self._rearm(record)
            await self._launch(name)

    def _rearm(self, record: ContainerRecord) -> None:
        now = self._clock.now()
        rearmed = dataclasses.replace(
            record, state=ContainerState.EXITED, update_time=now
        )
        self._commit([rearmed], [event_for(rearmed, EventType.CRASH_LOOP_REARMED, now)])
        self._attempts.pop(record.name, None)

    def _cancel_rearm(self, name: str) -> None:
        handle = self._rearm_timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    async def _retention_loop(self) -> None:
        """Prunes the event log by count and age, once a minute."""
        while True:
            try:
                removed = self._store.prune_events(
                    keep=self.settings.event_retention_count,
                    older_than=self._clock.now() - self.settings.event_retention_age,
                )
            except Exception:
                logger.exception("event retention failed")
            else:
                if removed:
                    logger.info("pruned events", extra={"removed": removed})
            await asyncio.sleep(60)

    async def _reconcile_loop(self) -> None:
        interval = self.settings.reconcile_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                result = await self.reconcile()
            except Exception:
                logger.exception("reconciliation failed")
                continue
            logger.debug(
                "reconciled",
                extra={
                    "already_running": result.already_running,
                    "started": len(result.started),
                    "failed": len(result.failed),
                },
            )

    # -- helpers -------------------------------------------------------------

    def _create(
        self, name: str, spec: ContainerSpec | None, now: datetime
    ) -> ContainerRecord:
        if spec is None:
            raise NotFoundError(
                f"container {name!r} not found; pass a spec to create it",
                resource_name=name,
            )
        if not self.settings.allow_ad_hoc_containers and name not in self._members:
            raise AdHocContainerNotAllowedError(
                f"container {name!r} is not declared in the fleet file and this "
                "operator refuses ad-hoc containers (allow_ad_hoc_containers = "
                "false); declare it in the fleet file",
                resource_name=name,
            )
        if len(self._records) >= self._max_containers:
            raise ResourceExhaustedError(
                f"the operator already holds {len(self._records)} containers, "
                "its limit; delete unused containers first",
                resource_name=name,
                reason="TOO_MANY_CONTAINERS",
            )
        record = ContainerRecord(
            name=name,
            spec=spec,
            desired_state=DesiredState.RUNNING,
            state=ContainerState.PENDING,
            create_time=now,
            update_time=now,
            min_replica_set=name in self._members,
        )
        self._commit([record], [event_for(record, EventType.CREATED, now)])
        return record

    def _is_active(self, record: ContainerRecord) -> bool:
        return record.state in _ACTIVE_STATES

    def _restarts_after(self, record: ContainerRecord) -> bool:
        last = record.last_exit
        if last is None:
            return True
        restart_policy = record.spec.restart_policy
        return policy.should_restart(
            restart_policy, policy.is_failure(last, restart_policy)
        )

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _check_name(self, name: str) -> None:
        violations = specs.validate_name(name)
        if violations:
            raise InvalidArgumentError.from_violations(violations)

    def _check_open(self) -> None:
        if self._closing:
            raise UnavailableError(
                "corral is shutting down; retry against the new process"
            )

    def _commit(
        self,
        records: Sequence[ContainerRecord],
        events: Sequence[Event],
        *,
        deleted: Sequence[str] = (),
        instances: Sequence[InstanceRow] = (),
        reports: Sequence[tuple[str, int]] = (),
    ) -> list[Event]:
        """Commits a change, then applies it in memory and publishes it."""
        if not records and not events and not deleted:
            return []
        committed = self._store.commit(
            records=records,
            events=events,
            deleted=deleted,
            instances=instances,
            reports=reports,
        )
        for record in records:
            self._records[record.name] = record
        for name in deleted:
            self._records.pop(name, None)
        self.hub.publish(committed)
        return committed


def hash_token(token: str) -> str:
    """The stored form of a per-instance token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _unsettled(record: ContainerRecord) -> bool:
    """Unknown, or stopping on request: to be settled when the runtime is back."""
    return record.state is ContainerState.UNKNOWN or (
        record.state is ContainerState.STOPPING
        and record.desired_state is DesiredState.STOPPED
    )


def _readable(delay: timedelta) -> str:
    """A delay for people: whole milliseconds."""
    return specs.format_duration(timedelta(milliseconds=round(delay / _MILLISECOND)))


_MILLISECOND = timedelta(milliseconds=1)


def _stops(count: int) -> str:
    return f"{count} unexpected stop" + ("" if count == 1 else "s")


def _crash_loop_error(
    record: ContainerRecord, status: policy.CrashLoopStatus
) -> CrashLoopDetectedError:
    window = specs.format_duration(record.spec.restart_policy.crash.window)
    rearm = (
        status.rearm_time.isoformat(timespec="seconds")
        if status.rearm_time
        else "when the window slides"
    )
    name = record.name
    return CrashLoopDetectedError(
        f"container {name!r} is crash looping ({_stops(status.count)} within "
        f"{window}); it re-arms at {rearm}; run ClearCrashHistory "
        f"(corral clear-crashes {name}) to start it now, or StartContainer with "
        f"force (corral start --force {name})",
        resource_name=record.name,
        metadata={"crashes": str(status.count), "window": window, "rearm_time": rearm},
    )
