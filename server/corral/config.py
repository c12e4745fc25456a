"""The operator's configuration: the fleet file, ``CORRAL_*`` variables, flags.

Every operator setting can be given in three places; the most specific wins:

1. a command-line flag (``overrides``, keyed by field name),
2. a ``CORRAL_*`` environment variable (see :data:`ENV_VARIABLES`),
3. the ``[operator]`` table of the TOML fleet file,

and otherwise takes the default documented on :class:`OperatorConfig`. The
fleet file's ``[[containers]]`` array declares the min replica set: each
table is a ``name`` plus the spec keys of :func:`corral.core.specs.spec_from_dict`.

:func:`load_config` checks everything before returning and reports every
problem at once in one :class:`ConfigError`, one line per problem, each
naming where it came from (the file and field, the variable, or the flag).
A value that a higher source overrides is still checked: a mistake in the
file is worth fixing even while a flag hides it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from corral.core.errors import InvalidArgumentError
from corral.core.model import ContainerSpec
from corral.core.specs import (
    parse_duration,
    spec_from_dict,
    validate_name,
    validate_spec,
)

__all__ = [
    "ENV_VARIABLES",
    "RUNTIMES",
    "ConfigError",
    "ConfigProblem",
    "FleetConfig",
    "OperatorConfig",
    "load_config",
]

RUNTIMES = ("process", "docker")
"""The runtimes corral knows."""

_RESERVED_ENV_KEYS = frozenset({"CORRAL_INSTANCE_ID", "CORRAL_ADDR", "CORRAL_TOKEN"})


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """The operator's settings, as resolved from flag, environment and file."""

    listen: str = "127.0.0.1:50051"
    """Address the gRPC server binds, ``host:port`` (or ``unix:path``).
    Loopback by default so that a first run exposes nothing to the network."""

    runtime: str = "process"
    """What runs the workloads: ``"process"`` (local process groups, needs
    nothing else) or ``"docker"`` (needs a Docker engine). Process by default
    because it works everywhere corral does."""

    reconcile_interval: timedelta = timedelta(seconds=60)
    """Period of the reconciliation pass; zero disables it (reconcile then
    runs only on demand). A minute repairs drift soon enough without
    polling the runtime constantly."""

    allow_ad_hoc_containers: bool = True
    """Whether the API may start containers the fleet file does not declare.
    Allowed by default, as in the original operator; turn off to make the
    fleet file the only source of truth."""

    container_name_env_key: str = "CONTAINER_NAME"
    """Variable carrying the container's name in each workload's
    environment. ``CONTAINER_NAME`` is what the original operator used."""

    data_dir: Path = Path("./data")
    """Directory for the SQLite database and workload logs. A relative path
    written in the fleet file is taken from the file's directory; from a flag,
    a variable or this default, from the current directory. Always absolute
    after :func:`load_config`."""

    database_url: str | None = None
    """SQLAlchemy URL of the database; None means a SQLite file in
    ``data_dir``, which needs no setup."""

    env_builder: str | None = None
    """Environment builder as ``"package.module:function"``, called with the
    spec and the operator's environment; None means no builder."""

    log_max_bytes: int = 10 * 1024 * 1024
    """Size in bytes at which a workload's log file is rotated. 10 MiB keeps
    a useful tail without letting a chatty workload fill the disk."""

    log_backups: int = 3
    """Rotated log files kept per workload, besides the current one."""

    shutdown_grace: timedelta = timedelta(seconds=5)
    """How long in-flight RPCs may run when the operator shuts down. Five
    seconds covers a normal call; streams are ended rather than waited for."""

    heartbeat_interval: timedelta = timedelta(seconds=5)
    """Time between WatchEvents heartbeats on a quiet stream. Five seconds
    lets a subscriber notice a dead connection quickly at negligible cost."""

    max_watchers: int = 1000
    """Concurrent WatchEvents streams allowed; past it RESOURCE_EXHAUSTED.
    Each stream costs a task and a little memory; a thousand is far above
    what a fleet's tooling needs and far below what hurts the operator."""

    event_retention_count: int = 1_000_000
    """Most events kept in the log; older ones are pruned.
    A million events is a few hundred MB at most and weeks of a busy fleet."""

    event_retention_age: timedelta = timedelta(days=30)
    """Events older than this are pruned (the newest is always kept). Thirty
    days covers a month of incident review."""

    max_containers: int = 10_000
    """Containers the operator holds at most; past it RESOURCE_EXHAUSTED.
    Well above the 5,000 the benchmarks run, and a guard against a runaway
    client filling the database."""

    max_message_bytes: int = 4 * 2**20
    """Largest request or response in bytes; a larger request is refused
    with RESOURCE_EXHAUSTED before corral parses it. 4 MiB, gRPC's own
    default, holds any sane spec (environments are capped at 1 MiB)."""

    max_watchers_per_token: int = 100
    """Concurrent WatchEvents streams one credential may hold (every
    anonymous caller shares one allowance); past it RESOURCE_EXHAUSTED.
    A hundred serves any dashboard while one leaked token cannot take all
    of ``max_watchers``."""

    insecure: bool = False
    """Allow listening on a non-loopback address with no authentication
    (no admin or reader token and no client CA). Off by default: corral
    refuses to start that way rather than expose an open operator."""

    reflection: bool = True
    """Serve gRPC server reflection (what ``grpcurl list`` uses). On by
    default; it reveals the API's shape, never data."""

    admin_token_file: Path | None = None
    """File of admin tokens, one per line (blank lines and ``#`` comments
    ignored), added to ``CORRAL_ADMIN_TOKEN``. Relative paths in the fleet
    file are taken from the file's directory."""

    reader_token_file: Path | None = None
    """File of reader tokens, like ``admin_token_file``, added to
    ``CORRAL_READER_TOKEN``."""

    tls_cert_file: Path | None = None
    """PEM certificate chain the server presents; with ``tls_key_file`` it
    turns TLS on. None serves plaintext."""

    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""

    tls_client_ca_file: Path | None = None
    """PEM CA certificates for mutual TLS: when set, every client must
    present a certificate signed by one of them."""

    config_file: Path | None = None
    """The fleet file these settings were read from (absolute), or None when
    there was none. Set by :func:`load_config`, never read from the file."""


@dataclasses.dataclass(frozen=True)
class FleetConfig:
    """The loaded configuration: operator settings and the min replica set."""

    operator: OperatorConfig
    """The operator's settings."""

    containers: tuple[tuple[str, ContainerSpec], ...]
    """The declared containers (the min replica set) as (name, spec) pairs,
    in the order of the fleet file."""


@dataclasses.dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration."""

    source: str
    """Where it came from: the fleet file as given, ``environment`` or
    ``command line``."""

    field: str
    """The field (``containers[1].restart_policy.crash.window``), variable
    (``CORRAL_LISTEN``) or flag (``--listen``); empty for the whole file."""

    reason: str
    """What is wrong, phrased so that a person can fix it."""

    def __str__(self) -> str:
        if not self.field:
            return f"{self.source}: {self.reason}"
        return f"{self.source}: {self.field}: {self.reason}"


class ConfigError(Exception):
    """The configuration is invalid. The message lists every problem, one per
    line.

    Attributes:
        problems: every problem found, in the order found.
        file: the fleet file, if the first problem is in it, else None.
        field: the first problem's field, variable or flag.
        reason: the first problem's reason.
    """

    def __init__(self, problems: list[ConfigProblem], file: Path | None) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)
        first = problems[0]
        self.file = file if file is not None and first.source == str(file) else None
        self.field = first.field
        self.reason = first.reason


class _Invalid(Exception):
    """A value cannot be used; the message is the reason."""


# --- value parsers -----------------------------------------------------------
#
# Each takes the raw value and whether it came as text (a variable or a flag,
# where everything is a string) and returns the typed value or raises _Invalid.


def _parse_text(value: object, textual: bool) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {type(value).__name__}")
    return value


def _parse_listen(value: object, textual: bool) -> str:
    text = _parse_text(value, textual)
    if text.startswith("unix:") and len(text) > len("unix:"):
        return text
    _host, colon, port = text.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise _Invalid(
            f'must be "host:port" like "127.0.0.1:50051" or "unix:path", got {text!r}'
        )
    return text


def _parse_runtime(value: object, textual: bool) -> str:
    text = _parse_text(value, textual)
    if text not in RUNTIMES:
        raise _Invalid(f'must be "process" or "docker", got {text!r}')
    return text


def _parse_duration(value: object, textual: bool) -> timedelta:
    if isinstance(value, timedelta) and not textual:
        if value < timedelta(0):
            raise _Invalid("must not be negative")
        return value
    if not isinstance(value, str):
        raise _Invalid(
            'must be a duration with a unit, like "10s" or "250ms", '
            f"got {type(value).__name__}"
        )
    try:
        return parse_duration(value, "")
    except InvalidArgumentError as error:
        raise _Invalid(error.violations[0].description) from None


def _parse_bool(value: object, textual: bool) -> bool:
    if isinstance(value, bool):
        return value
    if textual and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off"}:
            return False
        raise _Invalid(f'must be "true" or "false", got {value!r}')
    raise _Invalid(f"must be true or false, got {type(value).__name__}")


def _parse_int(value: object, textual: bool, minimum: int) -> int:
    if isinstance(value, bool):
        raise _Invalid("must be an integer, got bool")
    if textual and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _Invalid(f"must be an integer, got {value!r}") from None
    if not isinstance(value, int):
        raise _Invalid(f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise _Invalid(f"must be at least {minimum}, got {value}")
    return value


def _parse_env_key(value: object, textual: bool) -> str:
    text = _parse_text(value, textual)
    if not text or "=" in text or "\0" in text:
        raise _Invalid("must be a variable name: not empty, no '=' and no NUL")
    if text in _RESERVED_ENV_KEYS:
        raise _Invalid(f"{text} is set by corral itself; choose another name")
    return text


def _parse_path(value: object, textual: bool) -> Path:
    if isinstance(value, Path) and not textual:
        return value
    text = _parse_text(value, textual)
    if not text or "\0" in text:
        raise _Invalid("must be a directory path, not empty")
    return Path(text)


def _parse_optional_path(value: object, textual: bool) -> Path | None:
    if value is None and not textual:
        return None
    if isinstance(value, Path) and not textual:
        return value
    text = _parse_text(value, textual)
    if "\0" in text:
        raise _Invalid("must be a file path without NUL")
    return Path(text) if text else None


def _parse_optional_text(value: object, textual: bool) -> str | None:
    if value is None and not textual:
        return None
    return _parse_text(value, textual) or None


def _parse_builder_ref(value: object, textual: bool) -> str | None:
    text = _parse_optional_text(value, textual)
    if text is None:
        return None
    module, colon, function = text.partition(":")
    if not colon or not module or not function:
        raise _Invalid(f'must look like "package.module:function", got {text!r}')
    return text


_FIELDS: dict[str, Callable[[object, bool], Any]] = {
    "listen": _parse_listen,
    "runtime": _parse_runtime,
    "reconcile_interval": _parse_duration,
    "allow_ad_hoc_containers": _parse_bool,
    "container_name_env_key": _parse_env_key,
    "data_dir": _parse_path,
    "database_url": _parse_optional_text,
    "env_builder": _parse_builder_ref,
    "log_max_bytes": lambda value, textual: _parse_int(value, textual, 1),
    "log_backups": lambda value, textual: _parse_int(value, textual, 0),
    "shutdown_grace": _parse_duration,
    "heartbeat_interval": _parse_duration,
    "max_watchers": lambda value, textual: _parse_int(value, textual, 1),
    "event_retention_count": lambda value, textual: _parse_int(value, textual, 1),
    "event_retention_age": _parse_duration,
    "max_containers": lambda value, textual: _parse_int(value, textual, 1),
    "max_message_bytes": lambda value, textual: _parse_int(value, textual, 1024),
    "max_watchers_per_token": lambda value, textual: _parse_int(value, textual, 1),
    "insecure": _parse_bool,
    "reflection": _parse_bool,
    "admin_token_file": _parse_optional_path,
    "reader_token_file": _parse_optional_path,
    "tls_cert_file": _parse_optional_path,
    "tls_key_file": _parse_optional_path,
    "tls_client_ca_file": _parse_optional_path,
}
"""Every setting that the file, the environment and flags may give."""

_PATH_FIELDS = frozenset(
    {
        "data_dir",
        "admin_token_file",
        "reader_token_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_client_ca_file",
    }
)
"""Settings holding paths, made absolute against where they were given."""

ENV_VARIABLES = {f"CORRAL_{name.upper()}": name for name in _FIELDS}
"""Environment variable to setting: ``CORRAL_LISTEN`` to ``listen``, and so
on for every setting. An empty variable counts as unset."""


# --- loading -----------------------------------------------------------------


def load_config(
    path: Path | None,
    *,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> FleetConfig:
    """Loads and checks the whole configuration.

    Args:
        path: the TOML fleet file, or None to run with no declared
            containers and settings from the environment and flags only.
        environ: the environment to read ``CORRAL_*`` variables from
            (``os.environ`` in production; a dict in tests).
        overrides: settings from command-line flags, keyed by
            :class:`OperatorConfig` field name; values are typed or strings.
            None values are ignored.

    Returns:
        The configuration, with ``data_dir`` and ``config_file`` absolute.

    Raises:
        ConfigError: listing every problem found.
    """
    problems: list[ConfigProblem] = []
    cwd = Path.cwd()
    source = str(path) if path is not None else ""

    # Read the fleet file, if any: its [operator] settings and its containers.
    document: Mapping[str, Any] = {}
    if path is not None:
        document = _read_toml(path, problems)
    operator_table = _operator_table(document, source, problems)
    file_dir = (cwd / path).parent if path is not None else cwd

    # Layer the settings: file, then environment, then flags.
    settings: dict[str, Any] = {}
    for key, value in operator_table.items():
        where = (source, f"operator.{key}")
        if key not in _FIELDS:
            problems.append(ConfigProblem(*where, _unknown(key, "setting")))
            continue
        _apply(settings, key, value, False, where, problems, base=file_dir)

    for variable, key in ENV_VARIABLES.items():
        if environ.get(variable):
            where = ("environment", variable)
            _apply(settings, key, environ[variable], True, where, problems, base=cwd)

    for key, value in (overrides or {}).items():
        where = ("command line", f"--{key.replace('_', '-')}")
        if key not in _FIELDS:
            problems.append(ConfigProblem(*where, _unknown(key, "setting")))
        elif value is not None:
            textual = isinstance(value, str)
            _apply(settings, key, value, textual, where, problems, base=cwd)

    # The default data_dir is relative to where corral was started.
    settings.setdefault("data_dir", _absolute(cwd, OperatorConfig.data_dir))
    if path is not None:
        settings["config_file"] = _absolute(cwd, path)
    operator = OperatorConfig(**settings)

    containers = _containers(document, source, operator.runtime, problems)
    if problems:
        raise ConfigError(problems, path)
    return FleetConfig(operator=operator, containers=containers)


def _read_toml(path: Path, problems: list[ConfigProblem]) -> Mapping[str, Any]:
    """Parses the fleet file, recording why it cannot be read if it cannot."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        problems.append(ConfigProblem(str(path), "", f"invalid TOML: {error}"))
    except UnicodeDecodeError:
        problems.append(ConfigProblem(str(path), "", "is not UTF-8 text"))
    except OSError as error:
        reason = f"cannot read the fleet file: {error.strerror or error}"
        problems.append(ConfigProblem(str(path), "", reason))
    return {}


def _operator_table(
    document: Mapping[str, Any], source: str, problems: list[ConfigProblem]
) -> Mapping[str, Any]:
    """Checks the top level and returns the ``[operator]`` table."""
    for key in document:
        if key not in ("operator", "containers"):
            reason = _unknown(key, "top-level table", ("operator", "containers"))
            problems.append(ConfigProblem(source, key, reason))

    table = document.get("operator", {})
    if not isinstance(table, Mapping):
        problems.append(ConfigProblem(source, "operator", "must be a table"))
        return {}
    return table


def _apply(
    settings: dict[str, Any],
    key: str,
    value: object,
    textual: bool,
    where: tuple[str, str],
    problems: list[ConfigProblem],
    *,
    base: Path,
) -> None:
    """Parses one setting and stores it over any earlier source's value."""
    try:
        parsed = _FIELDS[key](value, textual)
    except _Invalid as error:
        problems.append(ConfigProblem(*where, str(error)))
        return
    if key in _PATH_FIELDS and parsed is not None:
        parsed = _absolute(base, parsed)
    settings[key] = parsed


def _absolute(base: Path, path: Path) -> Path:
    """``path`` taken from ``base``, normalised, without resolving symlinks."""
    return Path(os.path.normpath(base / path.expanduser()))


def _containers(
    document: Mapping[str, Any],
    source: str,
    runtime: str,
    problems: list[ConfigProblem],
) -> tuple[tuple[str, ContainerSpec], ...]:
    """Reads and checks the ``[[containers]]`` array (the min replica set)."""
    tables = document.get("containers", [])
    if not isinstance(tables, list):
        problems.append(
            ConfigProblem(source, "containers", "must be an array of tables")
        )
        return ()

    containers: list[tuple[str, ContainerSpec]] = []
    first_index: dict[str, int] = {}
    for index, table in enumerate(tables):
        prefix = f"containers[{index}]"
        if not isinstance(table, Mapping):
            problems.append(ConfigProblem(source, prefix, "must be a table"))
            continue

        name = table.get("name")
        if name is None:
            problems.append(ConfigProblem(source, f"{prefix}.name", "is required"))
        else:
            for violation in validate_name(name, f"{prefix}.name"):
                problems.append(
                    ConfigProblem(source, violation.field, violation.description)
                )
        if isinstance(name, str) and name in first_index:
            reason = (
                f"duplicate name {name!r}, "
                f"already used by containers[{first_index[name]}]"
            )
            problems.append(ConfigProblem(source, f"{prefix}.name", reason))
        elif isinstance(name, str):
            first_index[name] = index

        spec = _container_spec(table, prefix, source, runtime, problems)
        if spec is not None and isinstance(name, str):
            containers.append((name, spec))
    return tuple(containers)


def _container_spec(
    table: Mapping[str, Any],
    prefix: str,
    source: str,
    runtime: str,
    problems: list[ConfigProblem],
) -> ContainerSpec | None:
    """Builds and validates one container's spec, recording its violations."""
    data = {key: value for key, value in table.items() if key != "name"}
    try:
        spec = spec_from_dict(data, field_prefix=prefix)
    except InvalidArgumentError as error:
        for violation in error.violations:
            problems.append(
                ConfigProblem(source, violation.field, violation.description)
            )
        return None

    # An invalid runtime is reported on its own; check specs as for "process".
    checked_runtime = runtime if runtime in RUNTIMES else "process"
    violations = validate_spec(spec, runtime=checked_runtime, field_prefix=prefix)
    for violation in violations:
        problems.append(ConfigProblem(source, violation.field, violation.description))
    return None if violations else spec


def _unknown(key: str, what: str, allowed: tuple[str, ...] | None = None) -> str:
    choices = ", ".join(allowed if allowed is not None else tuple(_FIELDS))
    return f"unknown {what} {key!r}; expected one of: {choices}"
