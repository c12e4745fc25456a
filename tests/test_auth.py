"""Who may call what: every role against every RPC, open mode, the loopback
guard, token sources, watchers per token, malformed requests and the CLI's
``--token``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from corral.api import auth
from corral.api.server import CorralServer
from corral.config import ConfigError, load_config
from corral.v1 import lifecycle_pb2, operator_pb2
from tests.harness import PYTHON, ServerFactory, free_port, run_cli

ADMIN = "admin-token-0123456789abcdef"
READER = "reader-token-0123456789abcdef"
WRONG = "wrong-token-0123456789abcdef"
TOKENS = {"CORRAL_ADMIN_TOKEN": ADMIN, "CORRAL_READER_TOKEN": READER}
Code = grpc.StatusCode


# --- helpers -------------------------------------------------------------------


def corral_methods() -> list[tuple[str, Any]]:
    """(full method name, method descriptor) of every corral RPC."""
    methods = []
    for module in (operator_pb2, lifecycle_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods.append((f"/{service.full_name}/{method.name}", method))
    return methods


def request_class(method: Any) -> Any:
    return message_factory.GetMessageClass(method.input_type)


def reason_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


async def call(
    channel: grpc.aio.Channel,
    method: str,
    request: bytes,
    token: str | None,
    *,
    streaming: bool = False,
) -> tuple[Code, str]:
    """Sends raw request bytes; returns the status code and ErrorInfo reason."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        if streaming:
            stream = channel.unary_stream(method)(request, metadata=metadata, timeout=5)
            await stream.read()
            stream.cancel()
        else:
            await channel.unary_unary(method)(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code(), reason_of(error)
    return Code.OK, ""


# --- the rule table ---------------------------------------------------------------


def test_every_method_of_every_service_has_a_rule() -> None:
    pool = descriptor_pool.Default()
    services = [
        service
        for module in (operator_pb2, lifecycle_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    ]
    services.append(health_pb2.DESCRIPTOR.services_by_name["Health"])
    services.append(reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"])
    for name in ("grpc.reflection.v1.ServerReflection",):
        with contextlib.suppress(KeyError):
            services.append(pool.FindServiceByName(name))
    missing = [
        f"/{service.full_name}/{method.name}"
        for service in services
        for method in service.methods
        if f"/{service.full_name}/{method.name}" not in auth.RULES
    ]
    assert not missing, f"methods without an access rule: {missing}"


EXPECTED_READER_METHODS = {
    "GetContainer",
    "ListContainers",
    "ListEvents",
    "WatchEvents",
    "GetOperatorInfo",
}


def test_readers_get_exactly_the_read_only_methods() -> None:
    readers = {
        method.rpartition("/")[2]
        for method, role in auth.RULES.items()
        if role is auth.Role.READER
    }
    assert readers == EXPECTED_READER_METHODS


def expected(method: str, who: str) -> set[Code]:
    """What a caller holding ``who`` gets from ``method`` about a missing name."""
    rule = auth.RULES[method]
    short = method.rpartition("/")[2]
    if rule is auth.Role.WORKLOAD:
        return {Code.UNAUTHENTICATED}  # neither admin nor reader tokens report
    if who in ("none", "wrong"):
        return {Code.UNAUTHENTICATED}
    if who == "reader" and rule is auth.Role.ADMIN:
        return {Code.PERMISSION_DENIED}
    if short in ("ListContainers", "ListEvents", "GetOperatorInfo", "ReconcileFleet"):
        return {Code.OK}
    if short == "WatchEvents":
        return {Code.OK}
    return {Code.NOT_FOUND}


async def test_each_role_against_each_rpc(servers: ServerFactory) -> None:
    h = await servers.start(environ=TOKENS)
    tokens = {"none": None, "wrong": WRONG, "reader": READER, "admin": ADMIN}
    failures = []
    for method, descriptor in corral_methods():
        fields: dict[str, Any] = {}
        if "name" in descriptor.input_type.fields_by_name:
            fields["name"] = "ghost"
        if descriptor.name == "ReportEvent":
            fields.update(instance_id="i", event_id="e", type=1)
        request = request_class(descriptor)(**fields).SerializeToString()
        for who, token in tokens.items():
            code, reason = await call(
                h.channel,
                method,
                request,
                token,
                streaming=descriptor.server_streaming,
            )
            if code not in expected(method, who):
                failures.append(f"{method} as {who}: {code.name} {reason}")
    assert not failures, "\n".join(failures)


async def test_without_tokens_the_operator_service_is_open(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    for method, descriptor in corral_methods():
        if auth.RULES[method] is auth.Role.WORKLOAD:
            continue
        fields = (
            {"name": "ghost"} if "name" in descriptor.input_type.fields_by_name else {}
        )
        request = request_class(descriptor)(**fields).SerializeToString()
        code, _ = await call(
            h.channel, method, request, None, streaming=descriptor.server_streaming
        )
        assert code in {Code.OK, Code.NOT_FOUND}, method


async def test_a_reader_is_denied_before_the_target_is_looked_up(
    servers: ServerFactory,
) -> None:
    h = await servers.start(
        '[[containers]]\nname = "web"\ncommand = ["sleep", "300"]\n',
        environ=TOKENS,
    )
    stop = "/corral.v1.OperatorService/StopContainer"
    for name in ("web", "ghost", "Not A Name!"):
        request = operator_pb2.StopContainerRequest(name=name).SerializeToString()
        code, reason = await call(h.channel, stop, request, READER)
        assert (code, reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
        code, reason = await call(h.channel, stop, request, None)
        assert (code, reason) == (Code.UNAUTHENTICATED, "MISSING_CREDENTIALS")
        code, reason = await call(h.channel, stop, request, WRONG)
        assert (code, reason) == (Code.UNAUTHENTICATED, "INVALID_TOKEN")


async def test_health_and_reflection_stay_open_and_reflection_can_be_off(
    servers: ServerFactory,
) -> None:
    h = await servers.start(environ=TOKENS)
    health = health_pb2_grpc.HealthStub(h.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(h.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for answer in stub.ServerReflectionInfo(iter([request])):
        names = {service.name for service in answer.list_services_response.service}
        assert "corral.v1.OperatorService" in names
        break

    closed = await servers.start(environ=TOKENS, reflection=False)
    stub = reflection_pb2_grpc.ServerReflectionStub(closed.channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stub.ServerReflectionInfo(iter([request])):
            pass
    assert refused.value.code() is Code.UNIMPLEMENTED


async def test_bytes_that_are_not_a_message_are_invalid_argument(
    servers: ServerFactory,
) -> None:
    h = await servers.start(environ=TOKENS)
    for method, descriptor in corral_methods():
        code, reason = await call(
            h.channel,
            method,
            b"\xff\xff\xff",
            ADMIN,
            streaming=descriptor.server_streaming,
        )
        assert (code, reason) == (Code.INVALID_ARGUMENT, "MALFORMED_REQUEST"), method
        # Without credentials, the refusal says nothing about the request.
        if auth.RULES[method] is not auth.Role.WORKLOAD:
            code, _ = await call(
                h.channel, method, b"\xff", None, streaming=descriptor.server_streaming
            )
            assert code is Code.UNAUTHENTICATED


async def test_watchers_are_capped_per_token(servers: ServerFactory) -> None:
    h = await servers.start(environ=TOKENS, max_watchers_per_token=2)
    watch = "/corral.v1.OperatorService/WatchEvents"
    request = operator_pb2.WatchEventsRequest().SerializeToString()
    metadata = (("authorization", f"Bearer {READER}"),)
    streams = [h.channel.unary_stream(watch)(request, metadata=metadata) for _ in "ab"]
    for stream in streams:
        await stream.read()  # a heartbeat: the stream is open
    code, reason = await call(h.channel, watch, request, READER, streaming=True)
    assert (code, reason) == (Code.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS_FOR_TOKEN")
    # Another credential has its own allowance.
    assert await call(h.channel, watch, request, ADMIN, streaming=True) == (
        Code.OK,
        "",
    )
    streams[0].cancel()
    await asyncio.sleep(0.2)
    assert await call(h.channel, watch, request, READER, streaming=True) == (
        Code.OK,
        "",
    )
    streams[1].cancel()


async def test_an_oversized_message_is_resource_exhausted(
    servers: ServerFactory,
) -> None:
    h = await servers.start(max_message_bytes=64 * 1024)
    spec = operator_pb2.StartContainerRequest(name="big")
    spec.spec.command.append("x" * 100_000)
    code, _ = await call(
        h.channel,
        "/corral.v1.OperatorService/StartContainer",
        spec.SerializeToString(),
        None,
    )
    assert code is Code.RESOURCE_EXHAUSTED
    listed = await h.stub.ListContainers(operator_pb2.ListContainersRequest())
    assert not listed.containers


# --- token sources and the loopback guard ------------------------------------------


def test_loopback_addresses() -> None:
    for listen in ("127.0.0.1:1", "127.8.0.1:1", "[::1]:1", "localhost:1", "unix:/s"):
        assert auth.is_loopback(listen), listen
    for listen in ("0.0.0.0:1", "[::]:1", ":1", "10.0.0.1:1", "example.com:1"):
        assert not auth.is_loopback(listen), listen


def test_tokens_come_from_variables_and_files(tmp_path: Path) -> None:
    (tmp_path / "admins").write_text(f"# admins\n\n{ADMIN}\n")
    (tmp_path / "fleet.toml").write_text('[operator]\nadmin_token_file = "admins"\n')
    config = load_config(tmp_path / "fleet.toml", environ={})
    assert config.operator.admin_token_file == tmp_path / "admins"
    other = "another-admin-0123456789"
    credentials = auth.load_credentials(
        config.operator, {"CORRAL_READER_TOKEN": f" {READER} , {WRONG}"}
    )
    roles = {
        token: found[0] if (found := credentials.role_of(token)) else None
        for token in (ADMIN, READER, WRONG, other)
    }
    assert roles == {
        ADMIN: auth.Role.ADMIN,
        READER: auth.Role.READER,
        WRONG: auth.Role.READER,
        other: None,
    }
    assert credentials.role_of("") is None


def test_a_weak_token_is_refused_without_quoting_it(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    with pytest.raises(ConfigError) as refused:
        auth.load_credentials(config.operator, {"CORRAL_ADMIN_TOKEN": "hunter2"})
    assert "hunter2" not in str(refused.value)
    assert "CORRAL_ADMIN_TOKEN" in str(refused.value)


async def test_an_open_operator_beyond_loopback_is_refused(tmp_path: Path) -> None:
    def server(environ: dict[str, str], **overrides: Any) -> CorralServer:
        config = load_config(
            None,
            environ={},
            overrides={"listen": "0.0.0.0:0", "data_dir": tmp_path, **overrides},
        )
        return CorralServer(config, environ=environ)

    with pytest.raises(ConfigError) as refused:
        server({})
    assert "--insecure" in str(refused.value)
    server({}, insecure=True).store.close()
    server(TOKENS).store.close()


async def test_serve_exits_2_beyond_loopback_without_authentication(
    tmp_path: Path,
) -> None:
    port = free_port()
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in auth.TOKEN_VARIABLES and key != "CORRAL_INSECURE"
    }
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-c",
        "from corral.cli import main; main()",
        "serve",
        "--listen",
        f"0.0.0.0:{port}",
        "--data-dir",
        str(tmp_path / "data"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "no authentication is configured" in err.decode()
    assert "--insecure" in err.decode()


# --- the CLI ------------------------------------------------------------------------


async def test_the_cli_sends_its_token(servers: ServerFactory) -> None:
    h = await servers.start(environ=TOKENS)
    refused = await run_cli(h.address, "ls")
    assert refused.code == 1
    assert "UNAUTHENTICATED" in refused.err
    assert "reason: MISSING_CREDENTIALS" in refused.err

    listed = await run_cli(h.address, "ls", env={"CORRAL_API_TOKEN": READER})
    assert listed.code == 0, listed.err
    denied = await run_cli(h.address, "reconcile", "--token", READER)
    assert denied.code == 1
    assert "PERMISSION_DENIED" in denied.err
    assert READER not in denied.err + denied.out
    allowed = await run_cli(h.address, "reconcile", "--token", ADMIN)
    assert allowed.code == 0, allowed.err
