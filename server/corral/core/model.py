"""The domain model: specs, records, exits and events, free of gRPC and SQL.

Every layer speaks these types. The API layer converts them to and from the
protobuf messages of ``corral.v1``; the store persists them as rows and JSON;
the runtimes take a :class:`ContainerSpec` and report :class:`ExitInfo`.
Records are frozen: a change produces a new record (``dataclasses.replace``),
so the operator can compute a change, commit it, and only then publish it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any


class RestartWhen(enum.StrEnum):
    """Which unexpected stops lead to a restart."""

    ALWAYS = "always"
    ON_FAILURE = "on_failure"
    NEVER = "never"


class DesiredState(enum.StrEnum):
    """The operator's intent, stored before any action is taken."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class ContainerState(enum.StrEnum):
    """The observed state of a container."""

    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    EXITED = "EXITED"
    CRASH_LOOP = "CRASH_LOOP"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"


class ExitReason(enum.StrEnum):
    """Why an instance ended."""

    EXITED = "EXITED"
    SIGNALED = "SIGNALED"
    OOM_KILLED = "OOM_KILLED"
    FAILED_TO_START = "FAILED_TO_START"
    WORKLOAD_ERROR = "WORKLOAD_ERROR"
    STOPPED_BY_OPERATOR = "STOPPED_BY_OPERATOR"
    REPLACED = "REPLACED"
    UNKNOWN = "UNKNOWN"


class EventType(enum.StrEnum):
    """What a lifecycle event records; mirrors ``corral.v1.EventType``."""

    CREATED = "CREATED"
    SPEC_UPDATED = "SPEC_UPDATED"
    DELETED = "DELETED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    READY = "READY"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    EXITED = "EXITED"
    START_FAILED = "START_FAILED"
    BACKOFF = "BACKOFF"
    CRASH_LOOP = "CRASH_LOOP"
    CRASH_HISTORY_CLEARED = "CRASH_HISTORY_CLEARED"
    ADOPTED = "ADOPTED"
    REPORTED = "REPORTED"
    CRASH_LOOP_REARMED = "CRASH_LOOP_REARMED"
    UNKNOWN = "UNKNOWN"
    ORPHAN_REMOVED = "ORPHAN_REMOVED"


@dataclasses.dataclass(frozen=True)
class CrashPolicy:
    """The crash-loop breaker's settings."""

    window: timedelta = timedelta(minutes=10)
    """Sliding window over unexpected stops. Ten minutes, as the original
    operator had it: long enough to see a loop, short enough to re-arm."""

    allowed_crashes: int = 3
    """Crashes tolerated inside the window; the next one trips the breaker."""


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Restart delay: ``initial * multiplier**n`` capped at ``max``."""

    initial: timedelta = timedelta(seconds=1)
    """First delay. One second lets a dependency come back before we retry."""

    max: timedelta = timedelta(seconds=60)
    """Cap on the delay, so a recovered dependency is noticed within a minute."""

    multiplier: float = 2.0
    """Growth factor between consecutive delays."""

    reset_after: timedelta = timedelta(seconds=60)
    """Uptime after which the next delay starts again from ``initial``."""

    jitter: float = 0.1
    """Fraction of random spread added, so a fleet does not restart in lockstep."""


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """How and when a container is restarted."""

    when: RestartWhen = RestartWhen.ON_FAILURE
    crash: CrashPolicy = CrashPolicy()
    success_exit_codes: tuple[int, ...] = ()
    """Exit codes that count as clean besides 0."""
    backoff: Backoff = Backoff()


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """What the user asks for. ``env`` keeps secret references unresolved."""

    command: tuple[str, ...] = ()
    image: str = ""
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    working_dir: str = ""
    restart_policy: RestartPolicy = RestartPolicy()
    stop_signal: str = "SIGTERM"
    stop_grace_period: timedelta = timedelta(seconds=10)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ports: tuple[str, ...] = ()
    """Published ports in Docker's short syntax,
    ``[HOST_IP:][HOST_PORT:]PORT[/tcp|udp|sctp]`` (docker runtime only)."""
    memory: str = ""
    """Memory limit such as ``"512m"`` or ``"1GiB"``; empty means no limit
    (docker runtime only)."""
    cpus: float = 0.0
    """CPU limit in cores, such as ``1.5``; 0 means no limit (docker runtime only)."""


@dataclasses.dataclass(frozen=True)
class ExitInfo:
    """How one instance ended."""

    reason: ExitReason
    time: datetime
    instance_id: str = ""
    exit_code: int | None = None
    signal: int | None = None
    message: str = ""


@dataclasses.dataclass(frozen=True)
class ContainerRecord:
    """Everything corral stores about one container."""

    name: str
    spec: ContainerSpec
    desired_state: DesiredState
    state: ContainerState
    create_time: datetime
    update_time: datetime
    min_replica_set: bool = False
    ready: bool = False
    instance_id: str = ""
    runtime_id: str = ""
    runtime_identity: str = ""
    """Opaque runtime data that proves a workload is the one we started
    (for processes: pid and kernel start time), used for adoption."""
    restart_count: int = 0
    last_exit: ExitInfo | None = None
    crash_history: tuple[ExitInfo, ...] = ()
    next_restart_time: datetime | None = None
    started_at: datetime | None = None
    last_request_id: str = ""
    pending_error: str = ""
    """The workload's last reported error, the cause of the exit that follows."""
    retry_after: timedelta | None = None
    """Restart delay the workload asked for with its last ERROR report."""


@dataclasses.dataclass(frozen=True)
class Event:
    """One lifecycle change. ``sequence`` is 0 until the store assigns it."""

    type: EventType
    name: str
    time: datetime
    state: ContainerState
    instance_id: str = ""
    exit: ExitInfo | None = None
    message: str = ""
    restart_count: int = 0
    sequence: int = 0


def event_for(
    record: ContainerRecord,
    type: EventType,
    time: datetime,
    *,
    exit: ExitInfo | None = None,
    message: str = "",
) -> Event:
    """Builds the event describing ``record`` right after a change."""
    return Event(
        type=type,
        name=record.name,
        time=time,
        state=record.state,
        instance_id=record.instance_id,
        exit=exit,
        message=message,
        restart_count=record.restart_count,
    )
