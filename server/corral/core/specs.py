"""Container specs as plain data: parsing, formatting and validation.

A spec reaches corral as a mapping (a ``[[containers]]`` table of the fleet
file, a stored JSON document, a converted API message). :func:`spec_from_dict`
checks its *shape* (known keys, right types, parseable durations) and builds a
:class:`~corral.core.model.ContainerSpec`; :func:`validate_spec` checks its
*meaning* (a command to run, sane backoff, a reachable crash-loop breaker).
Both collect every problem before reporting, so a person fixes a spec in one
round instead of one field at a time. :func:`spec_to_dict` is the exact
inverse of :func:`spec_from_dict` and yields JSON-serializable data, which is
what the store persists.

Durations are strings with a unit (``"250ms"``, ``"10s"``, ``"1m30s"``), the
same form in the fleet file, in stored specs and in error messages. Memory
sizes (``"512m"``, ``"1GiB"``) and published ports (``"8080:80/tcp"``) are
read by :func:`parse_memory` and :func:`parse_port`, here and in the docker
runtime alike, so validation and the runtime never disagree.
"""

from __future__ import annotations

import math
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TypeVar

from corral.core.errors import FieldViolation, InvalidArgumentError
from corral.core.model import (
    Backoff,
    ContainerSpec,
    CrashPolicy,
    RestartPolicy,
    RestartWhen,
)
from corral.core.policy import backoff_delay

__all__ = [
    "MAX_ENV_BYTES",
    "MIN_MEMORY_BYTES",
    "RESERVED_LABELS",
    "PortMapping",
    "format_duration",
    "parse_duration",
    "parse_memory",
    "parse_port",
    "signal_number",
    "spec_from_dict",
    "spec_to_dict",
    "validate_name",
    "validate_spec",
    "validate_spec_or_raise",
]

_T = TypeVar("_T")

RESERVED_LABELS = frozenset(
    {
        "corral.managed",
        "corral.name",
        "corral.instance",
        "corral.role",
        "corral.sandbox",
    }
)
"""Label keys corral sets on the containers it runs; a spec may not set them,
or a workload could pass for a sandbox or for another instance."""

MAX_ALLOWED_CRASHES = 100
"""Largest ``allowed_crashes``: the crash history holds that many entries and
is rewritten with every change of its container."""

MAX_ENV_BYTES = 1024 * 1024
"""Cap on a workload's environment (UTF-8 bytes of ``KEY=VALUE\\0`` entries).

Linux refuses an ``execve`` whose arguments and environment exceed a limit of
the same order; refusing at validation gives a clear error instead of a
workload that fails to start.
"""

_NAME_MAX = 63
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]*")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")

_DURATION_HINT = 'must be a duration with a unit, like "10s" or "250ms"'
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|us|h|m|s)")
_MICROS_PER_UNIT = {
    "h": 3_600_000_000,
    "m": 60_000_000,
    "s": 1_000_000,
    "ms": 1_000,
    "us": 1,
}

_SPEC_KEYS = (
    "command",
    "image",
    "env",
    "config",
    "working_dir",
    "restart_policy",
    "stop_signal",
    "stop_grace_period",
    "labels",
    "ports",
    "memory",
    "cpus",
)
_POLICY_KEYS = ("when", "crash", "success_exit_codes", "backoff")
_CRASH_KEYS = ("window", "allowed_crashes")
_BACKOFF_KEYS = ("initial", "max", "multiplier", "reset_after", "jitter")


# --- durations ---------------------------------------------------------------


def parse_duration(text: str, field: str) -> timedelta:
    """Parses a duration with units, such as ``"250ms"``, ``"1.5s"`` or ``"1m30s"``.

    Units are ``h``, ``m``, ``s``, ``ms`` and ``us``; parts may be combined
    (``"1h30m"``) and carry a decimal fraction (``"1.5s"``). The value must
    resolve to whole microseconds, the resolution of :class:`timedelta`.

    Args:
        text: the duration as written by a person.
        field: the field path named in the error, such as
            ``spec.restart_policy.crash.window``.

    Returns:
        The duration, never negative.

    Raises:
        InvalidArgumentError: the text is empty, negative, lacks a unit or is
            otherwise not a duration; its one violation names ``field``.
    """
    problem = _duration_problem(text)
    if problem is not None:
        raise InvalidArgumentError.from_violations([FieldViolation(field, problem)])

    return timedelta(microseconds=int(_duration_micros(text)))


def _duration_micros(text: str) -> Decimal:
    """Adds up the parts of a well-formed duration, exactly, in microseconds."""
    parts = _DURATION_PART.findall(text)
    return sum(
        (Decimal(number) * _MICROS_PER_UNIT[unit] for number, unit in parts),
        Decimal(0),
    )


def _duration_problem(text: object) -> str | None:
    """Says what is wrong with ``text`` as a duration, or None if it is fine."""
    if not isinstance(text, str):
        return f"{_DURATION_HINT}, got {_type_name(text)}"
    if not text:
        return f"{_DURATION_HINT}; it is empty"
    if text.startswith("-"):
        return f"must not be negative; {_DURATION_HINT}"
    if _DURATION_PART.sub("", text) != "" or not _DURATION_PART.match(text):
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
            return f'{_DURATION_HINT}; "{text}" has no unit'
        return f"{_DURATION_HINT}; got {text[:40]!r}"

    try:
        micros = _duration_micros(text)
    except InvalidOperation:
        return f"{_DURATION_HINT}; got {text[:40]!r}"
    if micros != micros.to_integral_value():
        return "must be a whole number of microseconds"
    try:
        timedelta(microseconds=int(micros))
    except OverflowError:
        return "is too large"
    return None


def format_duration(value: timedelta) -> str:
    """Formats a duration in the shortest exact form :func:`parse_duration` reads.

    Whole hours and minutes become ``h`` and ``m`` parts; the rest is seconds
    with a decimal fraction (``"1.5s"``), or ``ms``/``us`` when under a second
    (``"250ms"``). Zero is ``"0s"``. A negative duration is formatted with a
    leading ``-`` so that it can still be shown, though it does not parse.

    Args:
        value: the duration.

    Returns:
        Text such as ``"250ms"``, ``"10s"``, ``"10m"`` or ``"1h30m"``.
    """
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros < 0:
        return "-" + format_duration(-value)
    if micros == 0:
        return "0s"

    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if micros:
        parts.append(_format_seconds(micros))
    return "".join(parts)


def _format_seconds(micros: int) -> str:
    """Formats under a minute of microseconds in its shortest exact form."""
    seconds, fraction = divmod(micros, 1_000_000)
    if seconds == 0 and fraction % 1_000 == 0:
        return f"{fraction // 1_000}ms"
    if seconds == 0 and fraction % 1_000 != 0 and fraction < 1_000:
        return f"{fraction}us"
    if fraction == 0:
        return f"{seconds}s"

    decimal = f"{seconds}.{fraction:06d}".rstrip("0") + "s"
    if seconds == 0:
        millis, micro_rest = divmod(fraction, 1_000)
        alternative = f"{millis}ms" if micro_rest == 0 else f"{fraction}us"
        return min(alternative, decimal, key=len)
    return decimal


# --- memory sizes and ports ---------------------------------------------------

MIN_MEMORY_BYTES = 6 * 2**20
"""Smallest memory limit the Docker engine accepts (6 MiB); a smaller one
would only fail at start, so validation refuses it."""

_MEMORY_HINT = 'must be a size like "512m" or "1GiB"'
_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
"""Binary multipliers, as ``docker run --memory`` reads them."""

_PORT_HINT = (
    'must be a port mapping like "80", "8080:80", "127.0.0.1:8080:80" or "53:53/udp"'
)
_PORT = re.compile(
    r"(?:(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?([0-9]*):)?([0-9]+)(?:/(tcp|udp|sctp))?"
)
"""Docker's short syntax: ``[[HOST_IP:][HOST_PORT]:]PORT[/PROTO]``."""


def parse_memory(text: str) -> int:
    """Reads a memory size: bytes, or a number with ``k``, ``m``, ``g`` or
    ``t`` (binary multiples, optionally followed by ``b`` or ``ib``, any case).

    Args:
        text: the size as written, such as ``"512m"``, ``"1GiB"`` or ``"1.5g"``.

    Returns:
        The size in whole bytes (a fraction of a byte is dropped).

    Raises:
        ValueError: not a size, or not more than zero bytes; the message
            says what is expected.
    """
    match = _MEMORY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{_MEMORY_HINT}; got {text[:40]!r}")
    number, unit = match.groups()

    size = int(Decimal(number) * _MEMORY_UNITS[unit.lower()])
    if size <= 0:
        raise ValueError(f"must be more than zero bytes; got {text[:40]!r}")
    return size


class PortMapping(NamedTuple):
    """One published port, read from Docker's short syntax by :func:`parse_port`."""

    container_port: int
    protocol: str = "tcp"
    """``tcp``, ``udp`` or ``sctp``."""
    host_ip: str = ""
    """Address to bind on the host; empty means every address."""
    host_port: int | None = None
    """Port on the host; None lets the engine pick a free one."""


def parse_port(entry: str) -> PortMapping:
    """Reads a port entry: ``[[HOST_IP:][HOST_PORT]:]PORT[/tcp|udp|sctp]``.

    As with ``docker run -p``, every entry is published: ``"80"`` and
    ``"127.0.0.1::80"`` let the engine pick the host port. An IPv6 host
    address is written in brackets (``"[::1]:8080:80"``).

    Raises:
        ValueError: not a port mapping, or a port outside 1..65535; the
            message says what is expected.
    """
    match = _PORT.fullmatch(entry.strip())
    if match is None:
        raise ValueError(f"{_PORT_HINT}; got {entry[:40]!r}")
    host_ip, host_port, container_port, protocol = match.groups()

    ports = [("port", container_port)]
    if host_port:
        ports.append(("host port", host_port))
    for what, digits in ports:
        if not 0 < int(digits) < 65536:
            raise ValueError(f"{what} {int(digits)} is not in 1..65535; {_PORT_HINT}")
    return PortMapping(
        container_port=int(container_port),
        protocol=protocol or "tcp",
        host_ip=(host_ip or "").strip("[]"),
        host_port=int(host_port) if host_port else None,
    )


# --- spec <-> dict -----------------------------------------------------------


class _Reader:
    """Reads typed values out of a mapping, collecting violations."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def table(
        self, data: object, field: str, allowed: Sequence[str]
    ) -> Mapping[str, Any] | None:
        """Checks that ``data`` is a table with only ``allowed`` keys."""
        if not isinstance(data, Mapping):
            self.fail(field, f"must be a table, got {_type_name(data)}")
            return None

        for key in data:
            if key not in allowed:
                self.fail(
                    f"{field}.{key}",
                    f"unknown field; expected one of: {', '.join(allowed)}",
                )
        return data

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        field: str,
        convert: Callable[[object, str], _T | None],
        default: _T,
    ) -> _T:
        """Converts ``data[key]`` or returns ``default`` when it is absent."""
        if key not in data:
            return default
        value = convert(data[key], f"{field}.{key}")
        return default if value is None else value

    def string(self, value: object, field: str) -> str | None:
        if isinstance(value, str):
            return value
        self.fail(field, f"must be a string, got {_type_name(value)}")
        return None

    def integer(self, value: object, field: str) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.fail(field, f"must be an integer, got {_type_name(value)}")
        return None

    def number(self, value: object, field: str) -> float | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.fail(field, f"must be a number, got {_type_name(value)}")
        return None

    def duration(self, value: object, field: str) -> timedelta | None:
        problem = _duration_problem(value)
        if problem is not None:
            self.fail(field, problem)
            return None
        assert isinstance(value, str)  # _duration_problem checked it
        return parse_duration(value, field)

    def strings(self, value: object, field: str) -> tuple[str, ...] | None:
        if not isinstance(value, list | tuple):
            self.fail(field, f"must be an array of strings, got {_type_name(value)}")
            return None
        items = [self.string(item, f"{field}[{i}]") for i, item in enumerate(value)]
        return tuple(item for item in items if item is not None)

    def integers(self, value: object, field: str) -> tuple[int, ...] | None:
        if not isinstance(value, list | tuple):
            self.fail(field, f"must be an array of integers, got {_type_name(value)}")
            return None
        items = [self.integer(item, f"{field}[{i}]") for i, item in enumerate(value)]
        return tuple(item for item in items if item is not None)

    def string_table(self, value: object, field: str) -> dict[str, str] | None:
        if not isinstance(value, Mapping):
            self.fail(field, f"must be a table of strings, got {_type_name(value)}")
            return None
        result: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(field, f"keys must be strings, got {_type_name(key)}")
            elif (text := self.string(item, f"{field}.{key}")) is not None:
                result[key] = text
        return result

    def json_table(self, value: object, field: str) -> dict[str, Any] | None:
        if not isinstance(value, Mapping):
            self.fail(field, f"must be a table, got {_type_name(value)}")
            return None
        copied = _copy_json(value, field, self.fail)
        return copied if isinstance(copied, dict) else None

    def when(self, value: object, field: str) -> RestartWhen | None:
        choices = ", ".join(f'"{w.value}"' for w in RestartWhen)
        if isinstance(value, str) and value in {w.value for w in RestartWhen}:
            return RestartWhen(value)
        shown = repr(value) if isinstance(value, str) else _type_name(value)
        self.fail(field, f"must be one of {choices}, got {shown}")
        return None


def _copy_json(value: object, field: str, fail: Callable[[str, str], None]) -> Any:
    """Deep-copies JSON-compatible data (tables become dicts, arrays lists).

    Anything else, such as a TOML date, is reported: the config is stored as
    JSON and handed to the environment builder, so it must survive that trip.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        fail(field, "must be a finite number")
        return None
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                fail(field, f"keys must be strings, got {_type_name(key)}")
                continue
            result[key] = _copy_json(item, f"{field}.{key}", fail)
        return result
    if isinstance(value, list | tuple):
        return [_copy_json(item, f"{field}[{i}]", fail) for i, item in enumerate(value)]
    fail(
        field,
        "must hold only strings, numbers, booleans, arrays and tables, "
        f"got {_type_name(value)}",
    )
    return None


def spec_from_dict(
    data: Mapping[str, Any], *, field_prefix: str = "spec"
) -> ContainerSpec:
    """Builds a spec from plain data, as in a fleet file's container table.

    Keys are the snake_case names of the fleet file; durations are strings
    with a unit; missing keys take the model's defaults. Only the shape is
    checked here; call :func:`validate_spec` for the semantic rules.

    Args:
        data: the spec as a mapping (no ``name`` key).
        field_prefix: prefix of the field paths in violations, such as
            ``spec`` or ``containers[1]``.

    Returns:
        The spec.

    Raises:
        InvalidArgumentError: listing every unknown key, wrong type, bad
            duration or bad enum value, each with its dotted field path.
    """
    reader = _Reader()
    table = reader.table(data, field_prefix, _SPEC_KEYS)
    if table is None:
        raise InvalidArgumentError.from_violations(reader.violations)

    defaults = ContainerSpec()
    p = field_prefix
    spec = ContainerSpec(
        command=reader.get(table, "command", p, reader.strings, defaults.command),
        image=reader.get(table, "image", p, reader.string, defaults.image),
        env=reader.get(table, "env", p, reader.string_table, {}),
        config=reader.get(table, "config", p, reader.json_table, {}),
        working_dir=reader.get(table, "working_dir", p, reader.string, ""),
        restart_policy=_policy_from_dict(reader, table, f"{p}.restart_policy"),
        stop_signal=reader.get(
            table, "stop_signal", p, reader.string, defaults.stop_signal
        ),
        stop_grace_period=reader.get(
            table, "stop_grace_period", p, reader.duration, defaults.stop_grace_period
        ),
        labels=reader.get(table, "labels", p, reader.string_table, {}),
        ports=reader.get(table, "ports", p, reader.strings, defaults.ports),
        memory=reader.get(table, "memory", p, reader.string, defaults.memory),
        cpus=reader.get(table, "cpus", p, reader.number, defaults.cpus),
    )

    if reader.violations:
        raise InvalidArgumentError.from_violations(reader.violations)
    return spec


def _policy_from_dict(
    reader: _Reader, spec: Mapping[str, Any], field: str
) -> RestartPolicy:
    """Reads ``restart_policy`` out of a spec table, defaults when absent."""
    default = RestartPolicy()
    if "restart_policy" not in spec:
        return default
    table = reader.table(spec["restart_policy"], field, _POLICY_KEYS)
    if table is None:
        return default

    crash = default.crash
    if "crash" in table:
        crash_table = reader.table(table["crash"], f"{field}.crash", _CRASH_KEYS)
        if crash_table is not None:
            crash = _crash_from_dict(reader, crash_table, f"{field}.crash")

    backoff = default.backoff
    if "backoff" in table:
        backoff_table = reader.table(
            table["backoff"], f"{field}.backoff", _BACKOFF_KEYS
        )
        if backoff_table is not None:
            backoff = _backoff_from_dict(reader, backoff_table, f"{field}.backoff")

    return RestartPolicy(
        when=reader.get(table, "when", field, reader.when, default.when),
        crash=crash,
        success_exit_codes=reader.get(
            table, "success_exit_codes", field, reader.integers, ()
        ),
        backoff=backoff,
    )


def _crash_from_dict(
    reader: _Reader, table: Mapping[str, Any], field: str
) -> CrashPolicy:
    default = CrashPolicy()
    return CrashPolicy(
        window=reader.get(table, "window", field, reader.duration, default.window),
        allowed_crashes=reader.get(
            table, "allowed_crashes", field, reader.integer, default.allowed_crashes
        ),
    )


def _backoff_from_dict(
    reader: _Reader, table: Mapping[str, Any], field: str
) -> Backoff:
    d = Backoff()
    return Backoff(
        initial=reader.get(table, "initial", field, reader.duration, d.initial),
        max=reader.get(table, "max", field, reader.duration, d.max),
        multiplier=reader.get(table, "multiplier", field, reader.number, d.multiplier),
        reset_after=reader.get(
            table, "reset_after", field, reader.duration, d.reset_after
        ),
        jitter=reader.get(table, "jitter", field, reader.number, d.jitter),
    )


def spec_to_dict(spec: ContainerSpec) -> dict[str, Any]:
    """Turns a spec into JSON-serializable data, the inverse of :func:`spec_from_dict`.

    Every key is written, defaults included, so a stored spec does not change
    meaning if a default changes later. Durations use :func:`format_duration`.

    Args:
        spec: the spec.

    Returns:
        A new dict of plain lists, dicts, strings and numbers.
    """
    policy = spec.restart_policy
    backoff = policy.backoff
    return {
        "command": list(spec.command),
        "image": spec.image,
        "env": dict(spec.env),
        "config": _copy_json(spec.config, "config", _ignore),
        "working_dir": spec.working_dir,
        "restart_policy": {
            "when": policy.when.value,
            "crash": {
                "window": format_duration(policy.crash.window),
                "allowed_crashes": policy.crash.allowed_crashes,
            },
            "success_exit_codes": list(policy.success_exit_codes),
            "backoff": {
                "initial": format_duration(backoff.initial),
                "max": format_duration(backoff.max),
                "multiplier": float(backoff.multiplier),
                "reset_after": format_duration(backoff.reset_after),
                "jitter": float(backoff.jitter),
            },
        },
        "stop_signal": spec.stop_signal,
        "stop_grace_period": format_duration(spec.stop_grace_period),
        "labels": dict(spec.labels),
        "ports": list(spec.ports),
        "memory": spec.memory,
        "cpus": float(spec.cpus),
    }


def _ignore(field: str, description: str) -> None:
    """Drops a violation: a spec already built is serialized as best it can."""


# --- semantic validation -----------------------------------------------------


def validate_spec(
    spec: ContainerSpec, *, runtime: str = "process", field_prefix: str = "spec"
) -> list[FieldViolation]:
    """Checks the semantic rules a spec must meet to be run by ``runtime``.

    Args:
        spec: the spec, as built by :func:`spec_from_dict` or the API layer.
        runtime: ``"process"`` (needs a command) or ``"docker"`` (needs an
            image; the command is optional and overrides the image's).
        field_prefix: prefix of the field paths in violations.

    Returns:
        Every violation found, empty when the spec is valid.

    Raises:
        ValueError: ``runtime`` is not a known runtime (a programming error;
            the configuration loader validates the runtime name itself).
    """
    p = field_prefix
    violations = _check_workload(spec, runtime, p)
    violations += _check_env(spec.env, f"{p}.env")
    violations += [
        FieldViolation(f"{p}.labels", "label keys must not be empty")
        for key in spec.labels
        if not key
    ]
    violations += [
        FieldViolation(
            f"{p}.labels",
            f"label {key!r} is reserved: corral sets it on its own containers",
        )
        for key in sorted(RESERVED_LABELS.intersection(spec.labels))
    ]

    if _signal_or_none(spec.stop_signal) is None:
        violations.append(
            FieldViolation(
                f"{p}.stop_signal",
                f'must be a signal name like "SIGTERM" or "SIGINT", '
                f"got {spec.stop_signal[:40]!r}",
            )
        )
    if spec.stop_grace_period < timedelta(0):
        violations.append(
            FieldViolation(f"{p}.stop_grace_period", "must not be negative")
        )

    violations += _check_resources(spec, runtime, p)
    violations += _check_policy(spec.restart_policy, f"{p}.restart_policy")
    return violations


def validate_spec_or_raise(
    spec: ContainerSpec, *, runtime: str = "process", field_prefix: str = "spec"
) -> None:
    """Runs :func:`validate_spec` and raises when it finds anything.

    Raises:
        InvalidArgumentError: listing every violation.
    """
    violations = validate_spec(spec, runtime=runtime, field_prefix=field_prefix)
    if violations:
        raise InvalidArgumentError.from_violations(violations)


def _check_workload(spec: ContainerSpec, runtime: str, p: str) -> list[FieldViolation]:
    """Checks what gets run: the command, the image and the working directory."""
    violations: list[FieldViolation] = []
    if runtime == "process":
        if not spec.command:
            violations.append(
                FieldViolation(
                    f"{p}.command",
                    'the process runtime needs a command, like ["python3", "app.py"]',
                )
            )
        elif not spec.command[0]:
            violations.append(
                FieldViolation(f"{p}.command[0]", "the program name must not be empty")
            )
    elif runtime == "docker":
        if not spec.image:
            violations.append(
                FieldViolation(f"{p}.image", "the docker runtime needs an image")
            )
    else:
        raise ValueError(f"unknown runtime {runtime!r}; expected process or docker")

    for i, arg in enumerate(spec.command):
        if "\0" in arg:
            violations.append(
                FieldViolation(f"{p}.command[{i}]", "must not contain a NUL character")
            )
    for field, value in (("image", spec.image), ("working_dir", spec.working_dir)):
        if "\0" in value:
            violations.append(
                FieldViolation(f"{p}.{field}", "must not contain a NUL character")
            )
    return violations


def _check_resources(spec: ContainerSpec, runtime: str, p: str) -> list[FieldViolation]:
    """Checks ports, the memory limit and the CPU limit (docker runtime only)."""
    violations: list[FieldViolation] = []
    if runtime != "docker":
        for field, given in (
            ("ports", bool(spec.ports)),
            ("memory", bool(spec.memory)),
            ("cpus", spec.cpus != 0),
        ):
            if given:
                violations.append(
                    FieldViolation(
                        f"{p}.{field}",
                        f"the {runtime} runtime does not support {field}; "
                        'remove it, or run the fleet with runtime = "docker"',
                    )
                )
        return violations

    for i, entry in enumerate(spec.ports):
        try:
            parse_port(entry)
        except ValueError as error:
            violations.append(FieldViolation(f"{p}.ports[{i}]", str(error)))
    if spec.memory:
        try:
            if parse_memory(spec.memory) < MIN_MEMORY_BYTES:
                violations.append(
                    FieldViolation(
                        f"{p}.memory",
                        f"must be at least 6m, the Docker engine's minimum; "
                        f"got {spec.memory[:40]!r}",
                    )
                )
        except ValueError as error:
            violations.append(FieldViolation(f"{p}.memory", str(error)))
    if not (math.isfinite(spec.cpus) and spec.cpus >= 0):
        violations.append(
            FieldViolation(f"{p}.cpus", "must be a finite number of at least 0")
        )
    elif 0 < spec.cpus < 0.01:
        violations.append(
            FieldViolation(
                f"{p}.cpus",
                "must be 0 (no limit) or at least 0.01, the Docker engine's minimum",
            )
        )
    return violations


def _check_env(env: Mapping[str, str], field: str) -> list[FieldViolation]:
    """Checks variable names, values and the environment's total size."""
    violations: list[FieldViolation] = []
    size = 0
    for key, value in env.items():
        if not key:
            violations.append(FieldViolation(field, "variable names must not be empty"))
        elif "=" in key or "\0" in key:
            violations.append(
                FieldViolation(
                    field,
                    f"variable name {key[:40]!r} must not contain '=' or NUL",
                )
            )
        if "\0" in value:
            violations.append(
                FieldViolation(f"{field}.{key}", "must not contain a NUL character")
            )
        size += _utf8_len(key) + _utf8_len(value) + 2

    if size > MAX_ENV_BYTES:
        violations.append(
            FieldViolation(
                field,
                f"is {size} bytes; the environment may hold at most "
                f"{MAX_ENV_BYTES} bytes (1 MiB)",
            )
        )
    return violations


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _check_policy(policy: RestartPolicy, p: str) -> list[FieldViolation]:
    """Checks the crash-loop breaker, the backoff and the success codes."""
    violations: list[FieldViolation] = []
    crash, backoff = policy.crash, policy.backoff

    def bad(field: str, description: str) -> None:
        violations.append(FieldViolation(f"{p}.{field}", description))

    if crash.allowed_crashes < 0:
        bad("crash.allowed_crashes", "must not be negative")
    elif crash.allowed_crashes > MAX_ALLOWED_CRASHES:
        bad(
            "crash.allowed_crashes",
            f"must be at most {MAX_ALLOWED_CRASHES}: the breaker keeps that many "
            "crashes in the container's history; for a workload that may crash "
            "freely, use a shorter window",
        )
    if crash.window <= timedelta(0):
        bad("crash.window", "must be longer than zero")
    for i, code in enumerate(policy.success_exit_codes):
        if not 0 <= code <= 255:
            bad(f"success_exit_codes[{i}]", f"must be an exit code 0..255, got {code}")

    if backoff.initial < timedelta(0):
        bad("backoff.initial", "must not be negative")
    if backoff.max < backoff.initial:
        bad("backoff.max", "must be at least backoff.initial")
    if not (math.isfinite(backoff.multiplier) and backoff.multiplier >= 1):
        bad("backoff.multiplier", "must be a finite number of at least 1")
    if not 0 <= backoff.jitter <= 1:
        bad("backoff.jitter", "must be between 0 and 1")
    if backoff.reset_after < timedelta(0):
        bad("backoff.reset_after", "must not be negative")
    if violations:
        return violations

    delays = _breaker_delay_seconds(backoff, crash.allowed_crashes)
    if delays >= crash.window.total_seconds():
        shown = format_duration(timedelta(seconds=min(delays, _SHOWN_SECONDS_MAX)))
        bad(
            "backoff",
            f"the crash-loop breaker can never trip: the first "
            f"{crash.allowed_crashes} restart delays alone add up to {shown}, "
            f"not less than crash.window ({format_duration(crash.window)}), so "
            f"{crash.allowed_crashes + 1} crashes never fit in the window; lower "
            "backoff.initial, backoff.multiplier or backoff.max, or widen "
            "crash.window",
        )
    return violations


_SHOWN_SECONDS_MAX = 1e12
"""Cap on a sum shown in a message, well inside what timedelta holds."""


def _breaker_delay_seconds(backoff: Backoff, crashes: int) -> float:
    """Sums, in seconds, the un-jittered delays before the ``crashes`` restarts
    that come before the breaker's trip.

    Restart ``k`` (from 0) waits :func:`~corral.core.policy.backoff_delay` of
    attempt ``k``. A crash-looping instance never stays up, so the attempt
    counter only resets when ``reset_after`` is zero; then every delay is the
    first. Closed form, so a huge ``allowed_crashes`` costs nothing.
    """
    if crashes <= 0:
        return 0.0
    first = backoff_delay(backoff, 0, 0.0).total_seconds()
    cap = backoff.max.total_seconds()
    multiplier = backoff.multiplier
    grows = backoff.reset_after > timedelta(0)
    if not grows or first == 0 or first >= cap or multiplier == 1:
        return first * crashes

    # Attempts below the cap form a geometric series; the rest wait the cap.
    below = min(crashes, math.ceil(math.log(cap / first) / math.log(multiplier)))
    geometric = first * (multiplier**below - 1) / (multiplier - 1)
    return geometric + cap * (crashes - below)


# --- names and signals -------------------------------------------------------


def validate_name(name: str, field: str = "name") -> list[FieldViolation]:
    """Checks a container name: lower-case ASCII letters, digits and ``-``,
    starting with a letter, 1 to 63 characters.

    Args:
        name: the name.
        field: the field path named in violations.

    Returns:
        At most one violation, saying which rule the name breaks.
    """
    rule = (
        "must be 1 to 63 characters of lower-case letters, digits and '-', "
        "starting with a letter"
    )
    if not isinstance(name, str):
        return [FieldViolation(field, f"{rule}; got {_type_name(name)}")]
    if not name:
        return [FieldViolation(field, f"{rule}; it is empty")]
    if len(name) > _NAME_MAX:
        return [FieldViolation(field, f"{rule}; it has {len(name)} characters")]
    if not ("a" <= name[0] <= "z"):
        return [FieldViolation(field, f"{rule}; it starts with {name[0]!r}")]
    if not _NAME_PATTERN.fullmatch(name):
        bad = next(c for c in name if c not in _NAME_CHARS)
        return [FieldViolation(field, f"{rule}; it contains {bad!r}")]
    return []


def signal_number(name: str) -> int:
    """Returns the number of a signal named like ``"SIGTERM"``, ``"TERM"`` or
    ``"sigterm"``.

    Raises:
        ValueError: no such signal on this platform.
    """
    number = _signal_or_none(name)
    if number is None:
        raise ValueError(f"unknown signal {name!r}; use a name like SIGTERM or SIGINT")
    return number


def _signal_or_none(name: str) -> int | None:
    upper = name.upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    if upper.startswith("SIG_"):
        return None
    member = signal.Signals.__members__.get(upper)
    return None if member is None else int(member)


def _type_name(value: object) -> str:
    """Names a value's type the way the fleet file's author thinks of it."""
    names: dict[type, str] = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        list: "an array",
        tuple: "an array",
        dict: "a table",
    }
    if value is None:
        return "nothing"
    return names.get(type(value), type(value).__name__)
