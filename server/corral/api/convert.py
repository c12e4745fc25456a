"""Conversion between the domain model and the ``corral.v1`` messages.

Specs cross the boundary through the same dictionary form the fleet file
uses, so a spec sent over gRPC is parsed and validated by exactly the code
that reads TOML.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from corral.core import specs
from corral.core.errors import FieldViolation, InvalidArgumentError
from corral.core.model import (
    ContainerRecord,
    ContainerSpec,
    Event,
    ExitInfo,
)
from corral.core.policy import CrashLoopStatus
from corral.v1 import container_pb2, event_pb2

_WHEN_PREFIX = "RESTART_WHEN_"


def spec_from_proto(message: container_pb2.ContainerSpec) -> ContainerSpec:
    """Parses and validates a spec sent by a client.

    Raises:
        InvalidArgumentError: naming every bad field under ``spec.``.
    """
    try:
        data: dict[str, Any] = json_format.MessageToDict(
            message, preserving_proto_field_name=True
        )
    except json_format.SerializeToJsonError:  # only a Struct can fail: NaN, Infinity
        raise InvalidArgumentError.from_violations(
            [
                FieldViolation(
                    "spec.config", "numbers must be finite, not NaN or Infinity"
                )
            ]
        ) from None
    policy = data.get("restart_policy")
    if isinstance(policy, dict) and "when" in policy:
        when = str(policy["when"])
        if when == "RESTART_WHEN_UNSPECIFIED":
            del policy["when"]
        elif when.startswith(_WHEN_PREFIX):
            policy["when"] = when.removeprefix(_WHEN_PREFIX).lower()
        else:
            raise InvalidArgumentError.from_violations(
                [FieldViolation("spec.restart_policy.when", f"unknown value {when!r}")]
            )
    return specs.spec_from_dict(data, field_prefix="spec")


_spec_messages: dict[int, tuple[ContainerSpec, container_pb2.ContainerSpec]] = {}
_SPEC_CACHE_SIZE = 20_000


def spec_to_proto(spec: ContainerSpec) -> container_pb2.ContainerSpec:
    """The message form of a stored spec (secret references unresolved).

    Memoised by identity: every version of a record shares its spec object,
    and listing a large fleet would otherwise convert each spec every time.
    Callers copy the result into their message and never change it.
    """
    cached = _spec_messages.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    if len(_spec_messages) >= _SPEC_CACHE_SIZE:
        _spec_messages.clear()
    message = _convert_spec(spec)
    _spec_messages[id(spec)] = (spec, message)
    return message


def _convert_spec(spec: ContainerSpec) -> container_pb2.ContainerSpec:
    data = specs.spec_to_dict(spec)
    policy = data.get("restart_policy")
    if isinstance(policy, dict) and "when" in policy:
        policy["when"] = _WHEN_PREFIX + str(policy["when"]).upper()
    message = container_pb2.ContainerSpec()
    json_format.ParseDict(data, message)
    return message


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp, or None for an unset time."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def exit_to_proto(exit: ExitInfo | None) -> container_pb2.ExitStatus | None:
    """The message form of an exit, or None."""
    return None if exit is None else _exit(exit)


def _exit(exit: ExitInfo) -> container_pb2.ExitStatus:
    return container_pb2.ExitStatus(
        reason=container_pb2.ExitReason.Value(f"EXIT_REASON_{exit.reason.value}"),
        exit_code=exit.exit_code,
        signal=exit.signal,
        message=exit.message,
        time=timestamp(exit.time),
        instance_id=exit.instance_id,
    )


_containers: dict[
    str, tuple[ContainerRecord, CrashLoopStatus, container_pb2.Container]
] = {}
_CONTAINER_CACHE_SIZE = 50_000


def container_to_proto(
    record: ContainerRecord, crash_loop: CrashLoopStatus
) -> container_pb2.Container:
    """The message form of a container record.

    Records are immutable and replaced on every change, so the message is
    memoised per name for the current record object (and the crash-loop
    status, which moves with the clock): listing a large fleet converts only
    what changed. Callers copy the result into their response and never
    change it.
    """
    cached = _containers.get(record.name)
    if cached is not None and cached[0] is record and cached[1] == crash_loop:
        return cached[2]
    if len(_containers) >= _CONTAINER_CACHE_SIZE:
        _containers.clear()
    message = _convert_container(record, crash_loop)
    _containers[record.name] = (record, crash_loop, message)
    return message


def _convert_container(
    record: ContainerRecord, crash_loop: CrashLoopStatus
) -> container_pb2.Container:
    crash = record.spec.restart_policy.crash
    return container_pb2.Container(
        name=record.name,
        spec=spec_to_proto(record.spec),
        desired_state=container_pb2.DesiredState.Value(
            f"DESIRED_STATE_{record.desired_state.value}"
        ),
        state=container_pb2.ContainerState.Value(
            f"CONTAINER_STATE_{record.state.value}"
        ),
        ready=record.ready,
        min_replica_set=record.min_replica_set,
        instance_id=record.instance_id,
        runtime_id=record.runtime_id,
        restart_count=record.restart_count,
        last_exit=exit_to_proto(record.last_exit),
        crash_history=[_exit(item) for item in record.crash_history],
        crash_loop=container_pb2.CrashLoop(
            active=crash_loop.active,
            count=crash_loop.count,
            window=specs.format_duration(crash.window),
            allowed_crashes=crash.allowed_crashes,
            rearm_time=timestamp(crash_loop.rearm_time if crash_loop.active else None),
        ),
        next_restart_time=timestamp(record.next_restart_time),
        started_at=timestamp(record.started_at),
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )


def event_to_proto(event: Event) -> event_pb2.Event:
    """The message form of a logged event."""
    return event_pb2.Event(
        sequence=event.sequence,
        time=timestamp(event.time),
        type=event_pb2.EventType.Value(f"EVENT_TYPE_{event.type.value}"),
        name=event.name,
        instance_id=event.instance_id,
        state=container_pb2.ContainerState.Value(
            f"CONTAINER_STATE_{event.state.value}"
        ),
        exit=exit_to_proto(event.exit),
        message=event.message,
        restart_count=event.restart_count,
    )
