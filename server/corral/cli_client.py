"""The client commands of ``corral``: ``ls``, ``get``, ``start`` and the rest.

Each command opens a synchronous gRPC channel to ``--addr`` (or
``CORRAL_ADDR``, default ``127.0.0.1:50051``), makes its calls through the
generated ``OperatorServiceStub`` and prints a table or text, or the
response as protobuf JSON (lowerCamelCase keys) with ``--json``.

Failures leave through one place, :func:`_rpc_errors`: a gRPC error prints
``corral: <CODE>: <message>`` on stderr, followed by the ``ErrorInfo`` reason
and any ``BadRequest`` field violations decoded from the rich status, and
exits 1. An operator that cannot be reached gets a hint on how to start one.
Usage errors exit 2, as click does by default.

The commands register themselves on :data:`corral.cli.main` when this module
is imported, which ``corral.cli`` does at its end.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import grpc
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from corral.cli import main
from corral.v1 import container_pb2, event_pb2, operator_pb2, operator_pb2_grpc

DEFAULT_ADDR = "127.0.0.1:50051"

_READ_TIMEOUT = 30.0
"""Seconds a read-only call may take. Calls that wait for a workload to stop
(stop, restart, rm, start replacing an instance) have no deadline, because
the spec's grace period may be long; Ctrl-C interrupts them."""

_PAGE_SIZE = 100
_WHEN_CHOICES = ("always", "on_failure", "never")
_MISSING = "-"

_Command = TypeVar("_Command", bound=Callable[..., Any])


# --- shared options and plumbing ---------------------------------------------


_CONNECTION_KEY = "corral.connection"
"""Where the credential options leave their values in ``click.Context.meta``."""


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Stores a credential option for :func:`_connect`, out of the signatures."""
    if param.name is not None:
        ctx.meta.setdefault(_CONNECTION_KEY, {})[param.name] = value


def _client_options(command: _Command) -> _Command:
    """Adds ``--addr``, ``--json`` and the credential options to a command.

    ``--token`` (``CORRAL_API_TOKEN``; not ``CORRAL_TOKEN``, which is a
    workload's own) is sent as ``authorization: Bearer``. ``--ca-cert``
    turns TLS on; ``--cert`` and ``--key`` add a client certificate.
    """
    for flag, envvar, help_text in (
        ("--key", "CORRAL_KEY", "PEM client key for mutual TLS."),
        ("--cert", "CORRAL_CERT", "PEM client certificate for mutual TLS."),
        ("--ca-cert", "CORRAL_CA_CERT", "PEM CA that signed the server; uses TLS."),
    ):
        command = click.option(
            flag,
            envvar=envvar,
            type=click.Path(path_type=Path, dir_okay=False),
            expose_value=False,
            callback=_remember,
            help=help_text,
        )(command)
    command = click.option(
        "--token",
        envvar="CORRAL_API_TOKEN",
        expose_value=False,
        callback=_remember,
        help="Admin or reader token; also read from CORRAL_API_TOKEN.",
    )(command)
    command = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the response as protobuf JSON (lowerCamelCase keys).",
    )(command)
    return click.option(
        "--addr",
        envvar="CORRAL_ADDR",
        default=DEFAULT_ADDR,
        show_default=True,
        help="Operator address; also read from CORRAL_ADDR.",
    )(command)


@contextlib.contextmanager
def _connect(addr: str) -> Iterator[operator_pb2_grpc.OperatorServiceStub]:
    """Opens a channel to ``addr`` and turns gRPC errors into exit status 1."""
    with _rpc_errors(addr), _channel(addr) as channel:
        yield operator_pb2_grpc.OperatorServiceStub(channel)


def _channel(addr: str) -> grpc.Channel:
    """A channel with the credential options of the running command."""
    options = click.get_current_context().meta.get(_CONNECTION_KEY, {})
    paths = {key: options.get(key) for key in ("ca_cert", "cert", "key")}
    if (paths["cert"] is None) != (paths["key"] is None):
        raise click.UsageError("--cert and --key go together (mutual TLS)")
    pem: dict[str, bytes | None] = {}
    for key, path in paths.items():
        try:
            pem[key] = path.read_bytes() if path is not None else None
        except OSError as error:
            flag = "--" + key.replace("_", "-")
            raise click.UsageError(f"{flag} {path}: {error.strerror}") from None
    if any(value is not None for value in pem.values()):
        credentials = grpc.ssl_channel_credentials(
            pem["ca_cert"], pem["key"], pem["cert"]
        )
        channel = grpc.secure_channel(addr, credentials)
    else:
        channel = grpc.insecure_channel(addr)
    token = options.get("token")
    if token:
        return grpc.intercept_channel(channel, _BearerToken(token))
    return channel


if TYPE_CHECKING:
    _UnaryInterceptor = grpc.UnaryUnaryClientInterceptor[Any, Any]
else:  # not subscriptable at run time
    _UnaryInterceptor = grpc.UnaryUnaryClientInterceptor


class _BearerToken(_UnaryInterceptor):
    """Adds ``authorization: Bearer <token>`` to every unary call."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        details = client_call_details._replace(
            metadata=(*(client_call_details.metadata or ()), self._metadata)
        )
        return continuation(details, request)


@contextlib.contextmanager
def _rpc_errors(addr: str) -> Iterator[None]:
    """Prints a failed call the way a person can act on, then exits 1."""
    try:
        yield
    except grpc.RpcError as error:
        _fail(addr, error)


def _fail(addr: str, error: grpc.RpcError) -> NoReturn:
    """Reports ``error`` on stderr and exits 1."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = error.details() if isinstance(error, grpc.Call) else str(error)
    status = _rich_status(error)

    # No rich status on UNAVAILABLE means the operator never answered at all;
    # corral's own UNAVAILABLE (shutting down) always carries an ErrorInfo.
    if code == grpc.StatusCode.UNAVAILABLE and status is None:
        click.echo(
            f"corral: cannot reach the operator at {addr}: {message}\n"
            f"is corral running at {addr}? start it with `make run`, "
            "or point --addr / CORRAL_ADDR at it",
            err=True,
        )
        sys.exit(1)

    click.echo(f"corral: {code.name}: {message}", err=True)
    for line in _detail_lines(status):
        click.echo(f"  {line}", err=True)
    sys.exit(1)


def _rich_status(error: grpc.RpcError) -> Any:
    """The ``google.rpc.Status`` carried in the trailers, or None."""
    if not isinstance(error, grpc.Call):
        return None
    try:
        return rpc_status.from_call(error)
    except ValueError:  # a trailer that disagrees with the status; show the rest
        return None


def _detail_lines(status: Any) -> list[str]:
    """Readable lines for the ErrorInfo and BadRequest details of ``status``."""
    if status is None:
        return []

    lines = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            lines.append(f"reason: {info.reason}")
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            lines.extend(
                f"field {violation.field}: {violation.description}"
                for violation in request.field_violations
            )
    return lines


def _print_json(data: Any) -> None:
    """Prints JSON-ready data, indented."""
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def _to_dict(message: Message) -> dict[str, Any]:
    """The protobuf JSON form of ``message``, with lowerCamelCase keys."""
    data: dict[str, Any] = json_format.MessageToDict(message)
    return data


def _print_message(message: Message) -> None:
    """Prints one response message as protobuf JSON."""
    click.echo(json_format.MessageToJson(message, indent=2))


# --- formatting --------------------------------------------------------------


def _enum_name(value: int, enum: Any, prefix: str) -> str:
    """``CONTAINER_STATE_RUNNING`` -> ``RUNNING``; unknown numbers as digits."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(prefix)


def _state(value: int) -> str:
    return _enum_name(value, container_pb2.ContainerState, "CONTAINER_STATE_")


def _desired(value: int) -> str:
    return _enum_name(value, container_pb2.DesiredState, "DESIRED_STATE_")


def _exit_reason(value: int) -> str:
    return _enum_name(value, container_pb2.ExitReason, "EXIT_REASON_")


def _event_type(value: int) -> str:
    return _enum_name(value, event_pb2.EventType, "EVENT_TYPE_")


def _when(value: int) -> str:
    return _enum_name(value, container_pb2.RestartWhen, "RESTART_WHEN_").lower()


def _time(message: Message, field: str) -> datetime | None:
    """The timestamp ``field`` of ``message`` as an aware datetime, or None."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


def _since(moment: datetime | None, now: datetime) -> str:
    """How long ago ``moment`` was, compactly, such as ``3m12s``."""
    if moment is None:
        return _MISSING
    return _span(now - moment)


def _span(delta: timedelta) -> str:
    """A duration in its two largest units, such as ``2d4h`` or ``45s``."""
    seconds = max(int(delta.total_seconds()), 0)
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return "".join(f"{amount}{unit}" for amount, unit in parts[:2] if amount) or "0s"


def _stamp(moment: datetime | None) -> str:
    """A time in local ISO form to the second, or ``-``."""
    if moment is None:
        return _MISSING
    return moment.astimezone().isoformat(timespec="seconds")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, like ``docker ps``."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [
            max(width, len(cell)) for width, cell in zip(widths, row, strict=True)
        ]

    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _describe_exit(status: container_pb2.ExitStatus) -> str:
    """One line for an ExitStatus, such as ``EXITED code 1: boom``."""
    text = _exit_reason(status.reason)
    if status.HasField("exit_code"):
        text += f" code {status.exit_code}"
    if status.HasField("signal"):
        text += f" signal {status.signal}"
    if status.message:
        text += f": {status.message}"
    return text


def _summary(container: container_pb2.Container) -> str:
    """One line after a start, stop or restart."""
    text = f"{container.name}: {_state(container.state)}"
    text += f" (desired {_desired(container.desired_state)})"
    if container.runtime_id:
        text += f", runtime id {container.runtime_id}"
    if container.instance_id:
        text += f", instance {container.instance_id}"
    return text


# --- ls ----------------------------------------------------------------------


@main.command("ls")
@click.option(
    "--filter",
    "filter_",
    default="",
    help='Terms that must all hold, such as "state=RUNNING min_replica_set=true".',
)
@click.option(
    "--all-pages/--first-page",
    default=True,
    show_default=True,
    help="Follow next_page_token to the end, or show one page only.",
)
@click.option(
    "--page-size", type=click.IntRange(0, 1000), default=_PAGE_SIZE, show_default=True
)
@_client_options
def list_containers(
    addr: str, as_json: bool, filter_: str, all_pages: bool, page_size: int
) -> None:
    """List containers in name order."""
    containers: list[container_pb2.Container] = []
    token = ""
    with _connect(addr) as stub:
        while True:
            request = operator_pb2.ListContainersRequest(
                page_size=page_size, page_token=token, filter=filter_
            )
            page = stub.ListContainers(request, timeout=_READ_TIMEOUT)
            containers.extend(page.containers)
            token = page.next_page_token
            if not token or not all_pages:
                break

    if as_json:
        data: dict[str, Any] = {
            "containers": [_to_dict(container) for container in containers],
            "eventSequence": str(page.event_sequence),
        }
        if token:
            data["nextPageToken"] = token
        _print_json(data)
        return

    click.echo(_containers_table(containers, datetime.now(UTC)))
    if token:
        click.echo("(more containers follow; drop --first-page to list them)", err=True)


def _containers_table(
    containers: Sequence[container_pb2.Container], now: datetime
) -> str:
    """The ``ls`` table."""
    headers = (
        "NAME",
        "STATE",
        "DESIRED",
        "READY",
        "RESTARTS",
        "RUNTIME-ID",
        "MEMBER",
        "AGE",
        "UPTIME",
    )
    rows = []
    for container in containers:
        running = container.state == container_pb2.CONTAINER_STATE_RUNNING
        uptime = _since(_time(container, "started_at"), now) if running else _MISSING
        rows.append(
            (
                container.name,
                _state(container.state),
                _desired(container.desired_state),
                "yes" if container.ready else "no",
                str(container.restart_count),
                container.runtime_id or _MISSING,
                "yes" if container.min_replica_set else "no",
                _since(_time(container, "create_time"), now),
                uptime,
            )
        )
    return _table(headers, rows)


# --- get ---------------------------------------------------------------------


@main.command("get")
@click.argument("name")
@_client_options
def get_container(addr: str, as_json: bool, name: str) -> None:
    """Show one container in detail: spec, state, last exit and crash history."""
    with _connect(addr) as stub:
        request = operator_pb2.GetContainerRequest(name=name)
        response = stub.GetContainer(request, timeout=_READ_TIMEOUT)

    if as_json:
        _print_message(response)
        return
    click.echo(_container_details(response.container, datetime.now(UTC)))


def _container_details(container: container_pb2.Container, now: datetime) -> str:
    """The ``get`` view: aligned ``key: value`` lines in sections."""
    started = _time(container, "started_at")
    running = container.state == container_pb2.CONTAINER_STATE_RUNNING
    lines = [
        f"Name:          {container.name}",
        f"State:         {_state(container.state)}",
        f"Desired:       {_desired(container.desired_state)}",
        f"Ready:         {'yes' if container.ready else 'no'}",
        f"Member:        {'yes' if container.min_replica_set else 'no'}",
        f"Instance:      {container.instance_id or _MISSING}",
        f"Runtime ID:    {container.runtime_id or _MISSING}",
        f"Restarts:      {container.restart_count}",
        f"Started:       {_stamp(started)}"
        + (f" (up {_since(started, now)})" if running and started else ""),
        f"Created:       {_stamp(_time(container, 'create_time'))}",
        f"Updated:       {_stamp(_time(container, 'update_time'))}",
    ]
    if container.HasField("next_restart_time"):
        restart_at = _time(container, "next_restart_time")
        lines.append(f"Next restart:  {_stamp(restart_at)}")

    lines.append("")
    lines.extend(_spec_lines(container.spec))

    lines.append("")
    if container.HasField("last_exit"):
        last = container.last_exit
        lines.append(f"Last exit:     {_describe_exit(last)}")
        lines.append(f"               at {_stamp(_time(last, 'time'))}")
    else:
        lines.append(f"Last exit:     {_MISSING}")

    lines.append("")
    lines.extend(_crash_lines(container))
    return "\n".join(lines)


def _spec_lines(spec: container_pb2.ContainerSpec) -> list[str]:
    """The spec part of the ``get`` view; env values stay unresolved."""
    policy = spec.restart_policy
    lines = ["Spec:"]
    if spec.command:
        lines.append(f"  command:     {shlex.join(spec.command)}")
    if spec.image:
        lines.append(f"  image:       {spec.image}")
    if spec.working_dir:
        lines.append(f"  working dir: {spec.working_dir}")
    for key, value in sorted(spec.env.items()):
        lines.append(f"  env:         {key}={value}")
    if spec.config.fields:
        config = json.dumps(_whole_numbers(json_format.MessageToDict(spec.config)))
        lines.append(f"  config:      {config}")
    for key, value in sorted(spec.labels.items()):
        lines.append(f"  label:       {key}={value}")

    restart = _when(policy.when) if policy.when else "on_failure"
    lines.append(f"  restart:     {restart}")
    if policy.success_exit_codes:
        codes = ", ".join(str(code) for code in policy.success_exit_codes)
        lines.append(f"  success:     exit codes {codes}")
    if spec.stop_signal or spec.stop_grace_period:
        stop = spec.stop_signal or "SIGTERM"
        grace = spec.stop_grace_period or "10s"
        lines.append(f"  stop:        {stop}, then SIGKILL after {grace}")
    return lines


def _whole_numbers(value: Any) -> Any:
    """Shows ``4.0`` as ``4``: a Struct stores every number as a double."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def _crash_lines(container: container_pb2.Container) -> list[str]:
    """Crash-loop status and the crash history table."""
    loop = container.crash_loop
    counted = (
        f"{loop.count} crash(es) in window {loop.window or _MISSING}, "
        f"{loop.allowed_crashes} allowed"
    )
    lines = [f"Crash loop:    {'ACTIVE' if loop.active else 'no'} ({counted})"]
    if loop.active:
        if loop.HasField("rearm_time"):
            rearm = _stamp(_time(loop, "rearm_time"))
            lines.append(f"               no automatic restart until {rearm};")
        lines.append(
            f"               `corral clear-crashes {container.name}` re-arms it now"
        )

    if not container.crash_history:
        lines.append("Crash history: none")
        return lines

    lines.append("Crash history:")
    rows = [
        (
            _stamp(_time(crash, "time")),
            crash.instance_id or _MISSING,
            _describe_exit(crash),
        )
        for crash in container.crash_history
    ]
    table = _table(("TIME", "INSTANCE", "EXIT"), rows)
    lines.extend(f"  {line}" for line in table.splitlines())
    return lines


# --- start -------------------------------------------------------------------


@main.command("start")
@click.argument("name")
@click.argument("args", nargs=-1, metavar="[-- CMD ARGS...]")
@click.option(
    "--command",
    "command_text",
    help='Command line, split like a shell would: --command "python3 app.py".',
)
@click.option(
    "--spec-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Spec as .json or .toml, with the fleet file's [[containers]] keys.",
)
@click.option("--env", "env_pairs", multiple=True, metavar="K=V", help="Repeatable.")
@click.option("--restart", "restart_when", type=click.Choice(_WHEN_CHOICES))
@click.option("--force", is_flag=True, help="Start even while crash looping.")
@click.option("--request-id", default="", help="Makes a retried start a no-op.")
@_client_options
def start_container(
    addr: str,
    as_json: bool,
    name: str,
    args: tuple[str, ...],
    command_text: str | None,
    spec_file: Path | None,
    env_pairs: tuple[str, ...],
    restart_when: str | None,
    force: bool,
    request_id: str,
) -> None:
    """Start NAME: its existing record, or with a new spec.

    With no spec option it starts the existing record. A command (--command,
    or everything after --) or --spec-file builds a new spec: the file first,
    then the command, --env and --restart over it. --env or --restart alone
    change the existing spec. A changed spec replaces a running instance.

    \b
    corral start web
    corral start sleeper -- python3 -c "import time; time.sleep(300)"
    corral start api --spec-file api.toml --env LOG_LEVEL=debug
    """
    if args and command_text is not None:
        raise click.UsageError("give the command either with --command or after --")
    new_spec = bool(args or command_text is not None or spec_file)

    with _connect(addr) as stub:
        spec = None
        if new_spec or env_pairs or restart_when:
            base = _read_spec_file(name, spec_file) if spec_file else {}
            if not new_spec:
                base = _current_spec(stub, name)
            command = shlex.split(command_text) if command_text is not None else args
            spec = _spec_message(base, tuple(command), env_pairs, restart_when)

        request = operator_pb2.StartContainerRequest(
            name=name, spec=spec, force=force, request_id=request_id
        )
        response = stub.StartContainer(request)

    if as_json:
        _print_message(response)
        return
    click.echo(_summary(response.container))


def _current_spec(
    stub: operator_pb2_grpc.OperatorServiceStub, name: str
) -> dict[str, Any]:
    """NAME's stored spec in the fleet file's snake_case form."""
    request = operator_pb2.GetContainerRequest(name=name)
    container = stub.GetContainer(request, timeout=_READ_TIMEOUT).container
    spec: dict[str, Any] = json_format.MessageToDict(
        container.spec, preserving_proto_field_name=True
    )
    return spec


def _read_spec_file(name: str, path: Path) -> dict[str, Any]:
    """Reads a spec from JSON or TOML; a ``name`` key must match NAME."""
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise click.BadParameter(f"{path}: {error}", param_hint="--spec-file") from None

    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: must hold a table", param_hint="--spec-file")
    declared = data.pop("name", name)
    if declared != name:
        raise click.BadParameter(
            f"{path} names container {declared!r}, not {name!r}",
            param_hint="--spec-file",
        )
    return data


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """``("K=V", ...)`` as a dict; the value may be empty or contain ``=``."""
    env = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--env")
        env[key] = value
    return env


def _spec_message(
    base: Mapping[str, Any],
    command: tuple[str, ...],
    env_pairs: tuple[str, ...],
    restart_when: str | None,
) -> container_pb2.ContainerSpec:
    """The proto form of ``base`` (snake_case keys) with the options over it.

    Restart ``when`` becomes its ``RESTART_WHEN_`` enum name; everything else
    already has the proto JSON shape (the parser takes snake_case names).
    Shape errors are usage errors here; the operator validates the meaning.
    """
    # A deep copy through JSON, which also turns TOML dates into strings.
    data: dict[str, Any] = json.loads(json.dumps(base, default=str))
    if command:
        data["command"] = list(command)
    if env_pairs:
        data["env"] = {**data.get("env", {}), **_parse_env(env_pairs)}
    if restart_when:
        data.setdefault("restart_policy", {})["when"] = restart_when
    if not data.get("command") and not data.get("image"):
        raise click.UsageError(
            "the spec needs a command: --command, -- CMD ARGS... or a --spec-file "
            "with command (or image)"
        )

    policy = data.get("restart_policy")
    if isinstance(policy, dict) and isinstance(policy.get("when"), str):
        when = policy["when"]
        if when.lower() in _WHEN_CHOICES:
            policy["when"] = "RESTART_WHEN_" + when.upper()

    message = container_pb2.ContainerSpec()
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as error:
        raise click.UsageError(f"invalid spec: {error}") from None
    return message


# --- stop, restart, rm, clear-crashes ----------------------------------------


@main.command("stop")
@click.argument("name")
@click.option("--grace", default="", help='Grace period before SIGKILL, such as "5s".')
@_client_options
def stop_container(addr: str, as_json: bool, name: str, grace: str) -> None:
    """Stop NAME and keep it stopped until started again."""
    with _connect(addr) as stub:
        request = operator_pb2.StopContainerRequest(name=name, grace_period=grace)
        response = stub.StopContainer(request)

    if as_json:
        _print_message(response)
        return
    click.echo(_summary(response.container))


@main.command("restart")
@click.argument("name")
@_client_options
def restart_container(addr: str, as_json: bool, name: str) -> None:
    """Stop NAME's running instance, if any, and start a new one."""
    with _connect(addr) as stub:
        request = operator_pb2.RestartContainerRequest(name=name)
        response = stub.RestartContainer(request)

    if as_json:
        _print_message(response)
        return
    click.echo(_summary(response.container))


@main.command("rm")
@click.argument("name")
@_client_options
def delete_container(addr: str, as_json: bool, name: str) -> None:
    """Delete NAME; it must be stopped and not in the min replica set."""
    with _connect(addr) as stub:
        response = stub.DeleteContainer(operator_pb2.DeleteContainerRequest(name=name))

    if as_json:
        _print_message(response)
        return
    click.echo(f"deleted {name}")


@main.command("clear-crashes")
@click.argument("name")
@_client_options
def clear_crashes(addr: str, as_json: bool, name: str) -> None:
    """Forget NAME's crash history, re-arming its crash-loop breaker."""
    with _connect(addr) as stub:
        request = operator_pb2.ClearCrashHistoryRequest(name=name)
        response = stub.ClearCrashHistory(request, timeout=_READ_TIMEOUT)

    if as_json:
        _print_message(response)
        return
    click.echo(f"cleared the crash history of {_summary(response.container)}")


# --- reconcile ---------------------------------------------------------------


@main.command("reconcile")
@_client_options
def reconcile(addr: str, as_json: bool) -> None:
    """Run one reconciliation pass over the min replica set now."""
    with _connect(addr) as stub:
        response = stub.ReconcileFleet(operator_pb2.ReconcileFleetRequest())

    if as_json:
        _print_message(response)
        return

    def named(count: int, names: Sequence[str]) -> str:
        return f"{count} ({', '.join(names)})" if names else str(count)

    click.echo(f"already running: {response.already_running}")
    click.echo(f"started:         {named(response.started, response.started_names)}")
    click.echo(f"skipped:         {named(response.skipped, response.skipped_names)}")
    click.echo(f"failed:          {len(response.failed)}")
    for failure in response.failed:
        click.echo(f"  {failure.name}: {failure.reason}: {failure.message}")


# --- events ------------------------------------------------------------------


@main.command("events")
@click.option(
    "--after", type=click.IntRange(min=0), default=0, help="Events after this sequence."
)
@click.option("--name", "names", multiple=True, help="Only this container; repeatable.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=0,
    help="Show at most this many events; 0 reads to the head of the log.",
)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep streaming new events (resumes by itself across disconnects).",
)
@_client_options
def list_events(
    addr: str,
    as_json: bool,
    after: int,
    names: tuple[str, ...],
    limit: int,
    follow: bool,
) -> None:
    """Read the event log after a sequence, oldest first."""
    if follow:
        _follow_events(addr, as_json, after, names)
        return
    events: list[event_pb2.Event] = []
    token = ""
    with _connect(addr) as stub:
        while True:
            wanted = limit - len(events) if limit else 1000
            request = operator_pb2.ListEventsRequest(
                after_sequence=after,
                page_size=min(wanted, 1000),
                names=names,
                page_token=token,
            )
            page = stub.ListEvents(request, timeout=_READ_TIMEOUT)
            events.extend(page.events)
            token = page.next_page_token
            if not token or not page.events or (limit and len(events) >= limit):
                break
    events = events[:limit] if limit else events

    if as_json:
        _print_json(
            {
                "events": [_to_dict(event) for event in events],
                "headSequence": str(page.head_sequence),
            }
        )
        return
    click.echo(_events_table(events))


def _follow_events(
    addr: str, as_json: bool, after: int, names: tuple[str, ...]
) -> None:
    """Streams events through the SDK's resuming watcher until interrupted."""
    from corral.sdk import Client, CorralError

    try:
        with Client(addr) as client:
            if not as_json:
                click.echo(_FOLLOW_HEADER)
            for event in client.watch_events(after_sequence=after, names=names):
                if as_json:
                    click.echo(json.dumps(_to_dict(event), separators=(",", ":")))
                else:
                    click.echo(_follow_line(event))
    except KeyboardInterrupt:
        return
    except CorralError as error:
        click.echo(f"corral: {error.code.name}: {error.message}", err=True)
        sys.exit(1)


_FOLLOW_HEADER = (
    f"{'SEQ':>7}  {'TIME':<20} {'NAME':<20} {'TYPE':<22} {'STATE':<11} DETAIL"
)


def _follow_line(event: event_pb2.Event) -> str:
    detail = event.message
    if event.HasField("exit"):
        exit_text = _describe_exit(event.exit)
        detail = exit_text if not detail else f"{detail} ({exit_text})"
    state = _state(event.state) if event.state else _MISSING
    return (
        f"{event.sequence:>7}  {_stamp(_time(event, 'time')):<20} {event.name:<20} "
        f"{_event_type(event.type):<22} {state:<11} {detail or _MISSING}"
    )


def _events_table(events: Sequence[event_pb2.Event]) -> str:
    """The ``events`` table."""
    rows = []
    for event in events:
        detail = event.message
        if event.HasField("exit"):
            exit_text = _describe_exit(event.exit)
            detail = exit_text if not detail else f"{detail} ({exit_text})"
        rows.append(
            (
                str(event.sequence),
                _stamp(_time(event, "time")),
                event.name,
                _event_type(event.type),
                _state(event.state) if event.state else _MISSING,
                detail or _MISSING,
            )
        )
    return _table(("SEQ", "TIME", "NAME", "TYPE", "STATE", "DETAIL"), rows)


# --- info --------------------------------------------------------------------


@main.command("info")
@_client_options
def operator_info(addr: str, as_json: bool) -> None:
    """Describe the operator: version, runtime, fleet and settings."""
    with _connect(addr) as stub:
        request = operator_pb2.GetOperatorInfoRequest()
        response = stub.GetOperatorInfo(request, timeout=_READ_TIMEOUT)

    if as_json:
        _print_message(response)
        return

    settings = response.settings
    started = _time(response, "start_time")
    members = ", ".join(response.min_replica_set) or "(none)"
    adhoc = "allowed" if settings.allow_ad_hoc_containers else "refused"
    lines = [
        f"Address:             {addr}",
        f"Version:             {response.version}",
        f"Runtime:             {response.runtime}",
        f"Started:             {_stamp(started)}"
        + (f" (up {_since(started, datetime.now(UTC))})" if started else ""),
        f"Event sequence:      {response.event_sequence}",
        f"Min replica set:     {members}",
        f"Listen:              {settings.listen}",
        f"Reconcile interval:  {settings.reconcile_interval}",
        f"Ad-hoc containers:   {adhoc}",
        f"Container name key:  {settings.container_name_env_key}",
        f"Data dir:            {settings.data_dir or _MISSING}",
        f"Database:            {settings.database or _MISSING}",
        f"Config file:         {settings.config_file or _MISSING}",
    ]
    click.echo("\n".join(lines))
