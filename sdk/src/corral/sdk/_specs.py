"""Plain-data specs and durations turned into the contract's messages.

A spec may be written as a dict with the fleet file's snake_case keys, the
way it appears under ``[[containers]]``. Only the shape is converted here;
corral validates the meaning and answers ``InvalidArgumentError`` naming each
bad field, so the rules live in one place (the server).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeAlias

from google.protobuf import json_format

from corral.v1 import container_pb2

SpecLike: TypeAlias = "container_pb2.ContainerSpec | Mapping[str, Any]"
"""A spec as the proto message or as fleet-file style plain data."""

Duration: TypeAlias = "str | timedelta"
"""A duration as corral writes it (``"250ms"``, ``"10s"``) or a timedelta."""

_WHEN = {
    "always": container_pb2.RESTART_WHEN_ALWAYS,
    "on_failure": container_pb2.RESTART_WHEN_ON_FAILURE,
    "never": container_pb2.RESTART_WHEN_NEVER,
}
_DURATION_FIELDS = {
    (): ("stop_grace_period",),
    ("restart_policy", "crash"): ("window",),
    ("restart_policy", "backoff"): ("initial", "max", "reset_after"),
}


def to_spec(spec: SpecLike) -> container_pb2.ContainerSpec:
    """Returns ``spec`` as a ``ContainerSpec`` message.

    Args:
        spec: the message itself (returned as is), or a mapping with the fleet
            file's keys: ``command``, ``image``, ``env``, ``config``,
            ``working_dir``, ``restart_policy`` (``when`` is ``"always"``,
            ``"on_failure"`` or ``"never"``; ``crash``; ``success_exit_codes``;
            ``backoff``), ``stop_signal``, ``stop_grace_period`` and
            ``labels``. Durations are strings with a unit or timedeltas.

    Returns:
        The message.

    Raises:
        ValueError: a key is unknown or a value has the wrong shape.
    """
    if isinstance(spec, container_pb2.ContainerSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"spec must be a ContainerSpec or a mapping, not {type(spec).__name__}"
        )

    data = _plain(spec)
    policy = data.get("restart_policy")
    if isinstance(policy, dict) and isinstance(policy.get("when"), str):
        policy["when"] = _restart_when(policy["when"])
    for path, keys in _DURATION_FIELDS.items():
        table = _table_at(data, path) or {}
        for key in keys:
            if isinstance(table.get(key), timedelta):
                table[key] = format_duration(table[key])

    try:
        return json_format.ParseDict(data, container_pb2.ContainerSpec())
    except json_format.ParseError as error:
        raise ValueError(f"spec: {error}") from error


def format_duration(value: Duration) -> str:
    """Writes a duration the way corral reads it (``"1.5s"``, ``"250ms"``).

    Args:
        value: a timedelta, or a string passed through unchanged.

    Returns:
        The duration text.

    Raises:
        ValueError: the timedelta is negative.
    """
    if isinstance(value, str):
        return value
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros < 0:
        raise ValueError(f"a duration cannot be negative, got {value}")
    if micros % 1_000_000 == 0:
        return f"{micros // 1_000_000}s"
    if micros % 1_000 == 0:
        return f"{micros // 1_000}ms"
    return f"{micros}us"


def _restart_when(text: str) -> int:
    key = text.lower().removeprefix("restart_when_")
    if key not in _WHEN:
        choices = ", ".join(f'"{w}"' for w in _WHEN)
        raise ValueError(
            f"spec.restart_policy.when must be one of {choices}, got {text!r}"
        )
    return _WHEN[key]


def _plain(value: Any) -> Any:
    """Deep-copies mappings into dicts and tuples into lists for ``ParseDict``."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _table_at(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    table: Any = data
    for key in path:
        table = table.get(key) if isinstance(table, dict) else None
    return table if isinstance(table, dict) else None
