"""Conversions between the domain model and table rows.

Specs go through :mod:`corral.core.specs`, the one JSON form of a spec.
Exits are stored as small JSON objects with ISO 8601 times. Enum values the
running code does not know (written by a newer corral) read back as
``UNKNOWN`` rather than failing the whole load.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import RowMapping

from corral.core.model import (
    ContainerRecord,
    ContainerSpec,
    ContainerState,
    DesiredState,
    Event,
    EventType,
    ExitInfo,
    ExitReason,
)
from corral.core.specs import spec_from_dict, spec_to_dict

_E = TypeVar("_E", bound=enum.Enum)

_MILLISECOND = timedelta(milliseconds=1)


_spec_cache: dict[int, tuple[ContainerSpec, dict[str, Any]]] = {}
_SPEC_CACHE_SIZE = 20_000


def _spec_json(spec: ContainerSpec) -> dict[str, Any]:
    """``spec_to_dict`` memoised by identity: records share their spec object
    across every change, and the restart path rewrites the row each time."""
    cached = _spec_cache.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    if len(_spec_cache) >= _SPEC_CACHE_SIZE:
        _spec_cache.clear()
    data = spec_to_dict(spec)
    _spec_cache[id(spec)] = (spec, data)
    return data


def record_to_row(record: ContainerRecord) -> dict[str, Any]:
    """Returns the ``containers`` row of ``record``."""
    return {
        "name": record.name,
        "spec": _spec_json(record.spec),
        "desired_state": record.desired_state.value,
        "state": record.state.value,
        "ready": record.ready,
        "min_replica_set": record.min_replica_set,
        "instance_id": record.instance_id,
        "runtime_id": record.runtime_id,
        "runtime_identity": record.runtime_identity,
        "restart_count": record.restart_count,
        "last_exit": exit_to_json(record.last_exit),
        "crash_history": [_exit_json(crash) for crash in record.crash_history],
        "next_restart_time": record.next_restart_time,
        "started_at": record.started_at,
        "last_request_id": record.last_request_id,
        "pending_error": record.pending_error,
        "retry_after_ms": _to_ms(record.retry_after),
        "create_time": record.create_time,
        "update_time": record.update_time,
    }


def record_from_row(row: RowMapping) -> ContainerRecord:
    """Returns the record stored in a ``containers`` row."""
    return ContainerRecord(
        name=row["name"],
        spec=spec_from_dict(row["spec"]),
        desired_state=_enum(DesiredState, row["desired_state"], DesiredState.STOPPED),
        state=_enum(ContainerState, row["state"], ContainerState.UNKNOWN),
        ready=bool(row["ready"]),
        min_replica_set=bool(row["min_replica_set"]),
        instance_id=row["instance_id"],
        runtime_id=row["runtime_id"],
        runtime_identity=row["runtime_identity"],
        restart_count=row["restart_count"],
        last_exit=exit_from_json(row["last_exit"]),
        crash_history=tuple(_exits(row["crash_history"])),
        next_restart_time=row["next_restart_time"],
        started_at=row["started_at"],
        last_request_id=row["last_request_id"],
        pending_error=row["pending_error"],
        retry_after=_from_ms(row["retry_after_ms"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
    )


def event_to_row(event: Event, sequence: int) -> dict[str, Any]:
    """Returns the ``events`` row of ``event`` under its assigned ``sequence``."""
    return {
        "sequence": sequence,
        "time": event.time,
        "type": event.type.value,
        "name": event.name,
        "instance_id": event.instance_id,
        "state": event.state.value,
        "exit": exit_to_json(event.exit),
        "message": event.message,
        "restart_count": event.restart_count,
    }


def event_from_row(row: RowMapping) -> Event:
    """Returns the event stored in an ``events`` row."""
    return Event(
        sequence=row["sequence"],
        time=row["time"],
        type=_enum(EventType, row["type"], EventType.UNKNOWN),
        name=row["name"],
        instance_id=row["instance_id"],
        state=_enum(ContainerState, row["state"], ContainerState.UNKNOWN),
        exit=exit_from_json(row["exit"]),
        message=row["message"],
        restart_count=row["restart_count"],
    )


def exit_to_json(exit: ExitInfo | None) -> dict[str, Any] | None:
    """Returns the JSON object of ``exit`` (``None`` stays ``None``)."""
    if exit is None:
        return None
    return _exit_json(exit)


@functools.lru_cache(maxsize=4096)
def _exit_json(exit: ExitInfo) -> dict[str, Any]:
    # Memoised: a crash history is rewritten with every change of its record.
    # Callers only serialise the result, never mutate it.
    return {
        "reason": exit.reason.value,
        "time": exit.time.astimezone(UTC).isoformat(),
        "instance_id": exit.instance_id,
        "exit_code": exit.exit_code,
        "signal": exit.signal,
        "message": exit.message,
    }


def exit_from_json(data: Mapping[str, Any] | None) -> ExitInfo | None:
    """Returns the exit stored as ``data`` by :func:`exit_to_json`."""
    if data is None:
        return None

    return ExitInfo(
        reason=_enum(ExitReason, data["reason"], ExitReason.UNKNOWN),
        time=datetime.fromisoformat(data["time"]).astimezone(UTC),
        instance_id=data.get("instance_id", ""),
        exit_code=data.get("exit_code"),
        signal=data.get("signal"),
        message=data.get("message", ""),
    )


def _exits(items: list[Mapping[str, Any]]) -> list[ExitInfo]:
    return [exit for exit in map(exit_from_json, items) if exit is not None]


def _enum(cls: type[_E], value: str, unknown: _E) -> _E:
    try:
        return cls(value)
    except ValueError:
        return unknown


def _to_ms(delay: timedelta | None) -> int | None:
    return None if delay is None else round(delay / _MILLISECOND)


def _from_ms(ms: int | None) -> timedelta | None:
    return None if ms is None else timedelta(milliseconds=ms)
