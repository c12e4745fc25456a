"""Request building shared by the sync and asyncio clients.

Both clients turn their keyword arguments into the same messages; keeping
that here means the two differ only in how they wait.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TypeAlias

from corral.sdk._specs import Duration, SpecLike, format_duration, to_spec
from corral.v1 import event_pb2, lifecycle_pb2, operator_pb2

EventTypeLike: TypeAlias = "event_pb2.EventType.ValueType | int | str"
"""An event type: the enum value, or its name with or without ``EVENT_TYPE_``
(``"READY"``, ``"ready"``, ``"EVENT_TYPE_READY"``)."""

ReportTypeLike: TypeAlias = "lifecycle_pb2.ReportType.ValueType | int | str"
"""A report type: the enum value, or ``"started"``, ``"stopped"``, ``"error"``."""


def start(
    name: str, spec: SpecLike | None, force: bool, request_id: str
) -> operator_pb2.StartContainerRequest:
    """Builds a StartContainer request; ``spec=None`` starts the existing record."""
    request = operator_pb2.StartContainerRequest(
        name=name, force=force, request_id=request_id
    )
    if spec is not None:
        request.spec.CopyFrom(to_spec(spec))
    return request


def stop(name: str, grace_period: Duration | None) -> operator_pb2.StopContainerRequest:
    """Builds a StopContainer request; ``None`` keeps the spec's grace period."""
    grace = format_duration(grace_period) if grace_period is not None else ""
    return operator_pb2.StopContainerRequest(name=name, grace_period=grace)


def watch(
    after_sequence: int, names: Iterable[str], types: Iterable[EventTypeLike]
) -> operator_pb2.WatchEventsRequest:
    """Builds a WatchEvents request."""
    return operator_pb2.WatchEventsRequest(
        after_sequence=after_sequence,
        names=list(names),
        types=[event_type(t) for t in types],
    )


def report(
    name: str,
    instance_id: str,
    type: ReportTypeLike,
    *,
    event_id: str,
    exit_code: int | None,
    message: str,
    retry_after: Duration | None,
) -> lifecycle_pb2.ReportEventRequest:
    """Builds a ReportEvent request; an empty ``event_id`` gets a fresh uuid4."""
    request = lifecycle_pb2.ReportEventRequest(
        name=name,
        instance_id=instance_id,
        event_id=event_id or str(uuid.uuid4()),
        type=report_type(type),
        message=message,
        retry_after=format_duration(retry_after) if retry_after is not None else "",
    )
    if exit_code is not None:
        request.exit_code = exit_code
    return request


def event_type(value: EventTypeLike) -> event_pb2.EventType.ValueType:
    """Resolves an event type given by value or by name."""
    if isinstance(value, str):
        name = value.upper()
        if not name.startswith("EVENT_TYPE_"):
            name = f"EVENT_TYPE_{name}"
        try:
            return event_pb2.EventType.Value(name)
        except ValueError:
            raise ValueError(f"unknown event type {value!r}") from None
    return event_pb2.EventType.ValueType(value)


def report_type(value: ReportTypeLike) -> lifecycle_pb2.ReportType.ValueType:
    """Resolves a report type given by value or by name."""
    if isinstance(value, str):
        name = value.upper()
        if not name.startswith("REPORT_TYPE_"):
            name = f"REPORT_TYPE_{name}"
        try:
            return lifecycle_pb2.ReportType.Value(name)
        except ValueError:
            raise ValueError(f"unknown report type {value!r}") from None
    return lifecycle_pb2.ReportType.ValueType(value)
