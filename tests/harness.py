"""Real corral servers for tests, and the cleanup that keeps the machine clean.

Workloads outlive corral by design, so every server a test starts registers
its address, and teardown SIGKILLs every process group whose environment
carries that ``CORRAL_ADDR``, whether the test passed or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from corral.api.server import CorralServer, default_runtime_factory
from corral.config import FleetConfig, load_config
from corral.core.clock import Clock
from corral.core.model import Event, EventType, ExitInfo
from corral.v1 import container_pb2, operator_pb2, operator_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
CORRAL = REPO / ".venv" / "bin" / "corral"
PYTHON = sys.executable


class ExitRecorder:
    """A runtime's ``on_exit`` callback that records calls and lets tests
    await them.

    Args:
        clock: what ``times`` are read from (wall clock by default).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.calls: list[tuple[str, str, ExitInfo]] = []
        self.times: dict[str, float] = {}
        """When each instance's first exit was reported, by ``clock``."""
        self._clock = clock
        self._futures: dict[str, asyncio.Future[ExitInfo]] = {}

    def __call__(self, name: str, instance_id: str, exit: ExitInfo) -> None:
        self.calls.append((name, instance_id, exit))
        self.times.setdefault(instance_id, self._clock())
        future = self._future(instance_id)
        if not future.done():
            future.set_result(exit)

    async def wait(self, instance_id: str, timeout: float = 15.0) -> ExitInfo:
        return await asyncio.wait_for(
            asyncio.shield(self._future(instance_id)), timeout
        )

    def count(self, instance_id: str) -> int:
        return sum(1 for _, iid, _ in self.calls if iid == instance_id)

    def _future(self, instance_id: str) -> asyncio.Future[ExitInfo]:
        if instance_id not in self._futures:
            loop = asyncio.get_running_loop()
            self._futures[instance_id] = loop.create_future()
        return self._futures[instance_id]


@dataclass
class CliResult:
    """How one ``corral`` command-line invocation ended."""

    code: int
    out: str
    err: str


async def run_cli(
    address: str, *args: str, env: dict[str, str] | None = None
) -> CliResult:
    """Runs ``corral ARGS...`` as a child against ``address`` (CORRAL_ADDR)."""
    environ = {**os.environ, "CORRAL_ADDR": address, "COLUMNS": "200", **(env or {})}
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-c",
        "from corral.cli import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


def error_info(error: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    """The ErrorInfo reason and the BadRequest fields of a refused call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "status details are missing"
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workload_pids(addresses: set[str]) -> list[int]:
    """Pids of live processes whose environment names one of ``addresses``."""
    wanted = {f"CORRAL_ADDR={address}".encode() for address in addresses}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and wanted.intersection(environ):
            found.append(int(entry))
    return found


def kill_workloads(addresses: set[str], timeout: float = 10.0) -> list[int]:
    """SIGKILLs the process groups of every workload of ``addresses``."""
    pids = workload_pids(addresses)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while workload_pids(addresses) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def eventually(
    check: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
) -> Any:
    """Re-checks ``check`` until it returns something truthy or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Harness:
    """A started in-process server with an async stub."""

    server: CorralServer
    channel: grpc.aio.Channel
    stub: operator_pb2_grpc.OperatorServiceStub
    cursor: int = 0
    seen: list[Event] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def operator(self) -> Any:
        return self.server.operator

    async def get(self, name: str) -> container_pb2.Container:
        response = await self.stub.GetContainer(
            operator_pb2.GetContainerRequest(name=name)
        )
        return response.container

    async def wait_event(
        self,
        name: str,
        type: EventType,
        timeout: float = 15.0,
        after: int | None = None,
    ) -> Event:
        """Waits for the next logged event of ``type`` about ``name``."""
        hub = self.server.operator.hub
        cursor = self.cursor if after is None else after
        deadline = time.monotonic() + timeout
        while True:
            events = self.server.store.list_events(after=cursor, limit=1000)
            for event in events:
                cursor = event.sequence
                self.seen.append(event)
                if event.name == name and event.type is type:
                    self.cursor = cursor
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {type.value} event for {name!r} within {timeout}s"
                )
            await hub.wait(cursor, min(left, 0.5))


class ServerFactory:
    """Starts in-process servers and tears them all down."""

    def __init__(self, tmp_path: Path, addresses: set[str]) -> None:
        self._tmp = tmp_path
        self._addresses = addresses
        self._started: list[Harness] = []

    def config(self, fleet: str = "", **operator: Any) -> FleetConfig:
        path = self._tmp / "fleet.toml"
        path.write_text(fleet)
        overrides = {
            "listen": "127.0.0.1:0",
            "data_dir": self._free_data_dir(),
            **operator,
        }
        return load_config(path, environ={}, overrides=overrides)

    def _free_data_dir(self) -> Path:
        """``data`` again after a server stopped (a restart sees its state);
        another directory while a server still runs there (one operator per
        data directory)."""
        busy = {h.server.config.operator.data_dir for h in self._started}
        candidate = self._tmp / "data"
        index = 1
        while candidate.resolve() in busy:
            index += 1
            candidate = self._tmp / f"data-{index}"
        return candidate

    async def start(
        self,
        fleet: str = "",
        *,
        clock: Clock | None = None,
        environ: dict[str, str] | None = None,
        wrap_runtime: Callable[[Any], Any] | None = None,
        **operator: Any,
    ) -> Harness:
        """Starts a server on ``fleet``.

        Args:
            wrap_runtime: wraps the real runtime, to inject a fault that
                cannot be produced otherwise.
        """
        config = self.config(fleet, **operator)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(environ or {})}
        factory = None
        if wrap_runtime is not None:
            build = default_runtime_factory(config)
            wrap = wrap_runtime

            def factory(on_exit: Any) -> Any:
                return wrap(build(on_exit))

        server = CorralServer(
            config,
            environ=env,
            clock=clock,
            heartbeat_interval=0.5,
            runtime_factory=factory,
        )
        try:
            await server.start()
        finally:
            # Workloads launch during start; register them even if it failed.
            if server.port:
                self._addresses.add(server.address)
        channel = grpc.aio.insecure_channel(server.address)
        harness = Harness(
            server, channel, operator_pb2_grpc.OperatorServiceStub(channel)
        )
        self._started.append(harness)
        return harness

    async def stop(self, harness: Harness) -> None:
        if harness in self._started:
            self._started.remove(harness)
            await harness.channel.close()
            await harness.server.stop(grace=1)

    async def close(self) -> None:
        for harness in list(self._started):
            await self.stop(harness)


@contextlib.asynccontextmanager
async def server_factory(
    tmp_path: Path, addresses: set[str]
) -> AsyncIterator[ServerFactory]:
    factory = ServerFactory(tmp_path, addresses)
    try:
        yield factory
    finally:
        await factory.close()


class CorralProcess:
    """``corral serve`` as a real child process, for SIGKILL tests."""

    def __init__(self, config: Path, data_dir: Path, addresses: set[str]) -> None:
        self.config = config
        self.data_dir = data_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        addresses.add(self.address)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "corral-serve.log"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PYTHON,
                    "-c",
                    "from corral.cli import main; main()",
                    "serve",
                    "--config",
                    str(self.config),
                    "--data-dir",
                    str(self.data_dir),
                    "--listen",
                    self.address,
                ],
                stdout=log,
                stderr=log,
            )
        wait_serving(self.address, timeout, self.process, self.log)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(30)


def wait_serving(
    address: str, timeout: float, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Blocks until the health service at ``address`` answers SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"corral exited early:\n{log.read_text()}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise AssertionError(f"corral did not serve within {timeout}s:\n{log.read_text()}")
