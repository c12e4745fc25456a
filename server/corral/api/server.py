"""The gRPC server: wiring, health, reflection and graceful shutdown.

Shutdown runs in phases: event streams are told to end (clients resume
elsewhere), in-flight calls get a grace period, then the operator stops its
timers and watchers. Workloads keep running: upgrading corral must not
restart the fleet.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from corral.api import auth, tls
from corral.api.servicers import LifecycleServicer, OperatorServicer
from corral.config import FleetConfig
from corral.core.clock import Clock
from corral.core.operator import Operator
from corral.runtimes.base import ExitCallback, Runtime
from corral.store import Store
from corral.v1 import lifecycle_pb2, lifecycle_pb2_grpc, operator_pb2, operator_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    operator_pb2.DESCRIPTOR.services_by_name["OperatorService"].full_name,
    lifecycle_pb2.DESCRIPTOR.services_by_name["LifecycleService"].full_name,
)

MAX_MESSAGE_BYTES = 4 * 2**20
"""Default largest request or response (the ``max_message_bytes`` setting)."""


def default_runtime_factory(config: FleetConfig) -> Callable[[ExitCallback], Runtime]:
    """Builds the runtime the fleet file names."""
    settings = config.operator
    if settings.runtime == "process":
        from corral.runtimes.process import ProcessRuntime

        def build(on_exit: ExitCallback) -> Runtime:
            return ProcessRuntime(
                log_dir=settings.data_dir / "logs",
                on_exit=on_exit,
                log_max_bytes=settings.log_max_bytes,
                log_backups=settings.log_backups,
            )

        return build
    if settings.runtime == "docker":
        # Imported here so that aiodocker is needed only by docker fleets.
        from corral.runtimes.docker import DockerRuntime

        def build_docker(on_exit: ExitCallback) -> Runtime:
            return DockerRuntime(on_exit=on_exit)

        return build_docker
    raise ValueError(f"runtime {settings.runtime!r} is not available")


class StartupError(Exception):
    """The operator cannot start; the message says what to change."""


def _lock_data_dir(data_dir: Path) -> int:
    """Takes the data directory's lock for this process's lifetime."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "corral.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StartupError(
            f"another corral is already running on the data directory {data_dir}; "
            "stop it first, or give this one its own --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class CorralServer:
    """One operator behind one gRPC server.

    Args:
        config: the loaded fleet file and settings.
        environ: the operator's environment (source of secrets).
        clock: injectable wall clock.
        runtime_factory: overrides the runtime named in ``config``.
        heartbeat_interval: seconds between WatchEvents heartbeats; overrides
            the setting.
    """

    def __init__(
        self,
        config: FleetConfig,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        runtime_factory: Callable[[ExitCallback], Runtime] | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        self.config = config
        settings = config.operator
        operator_environ = dict(os.environ if environ is None else environ)
        # Refuse an open operator beyond loopback and bad TLS files before
        # touching the database. API tokens are kept as digests only, and
        # never reach workloads or builders through ${secret:...}.
        self.credentials = auth.load_credentials(settings, operator_environ)
        auth.check_exposure(settings, self.credentials)
        self._tls = tls.server_credentials(settings)
        for variable in auth.TOKEN_VARIABLES:
            operator_environ.pop(variable, None)
        self.store = (
            Store(settings.database_url)
            if settings.database_url
            else Store.for_data_dir(settings.data_dir)
        )
        self.operator = Operator(
            settings=settings,
            members=config.containers,
            store=self.store,
            runtime_factory=runtime_factory or default_runtime_factory(config),
            advertise_addr=settings.listen,
            clock=clock,
            environ=operator_environ,
        )
        self._server = grpc.aio.server(
            interceptors=[
                auth.AuthInterceptor(
                    self.credentials,
                    max_watchers_per_token=settings.max_watchers_per_token,
                )
            ],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        self._health = health_aio.HealthServicer()
        self._heartbeat = (
            settings.heartbeat_interval.total_seconds()
            if heartbeat_interval is None
            else heartbeat_interval
        )
        self.port = 0
        self._lock: int | None = None

    @property
    def address(self) -> str:
        """``host:port`` where clients (and workloads) reach this server."""
        host = self.config.operator.listen.rpartition(":")[0]
        if host in ("0.0.0.0", "[::]", "", "::"):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Binds, opens the operator (adopting survivors), then serves."""
        started = datetime.now(UTC)
        operator_pb2_grpc.add_OperatorServiceServicer_to_server(
            OperatorServicer(
                self.operator, started=started, heartbeat_interval=self._heartbeat
            ),
            self._server,
        )
        lifecycle_pb2_grpc.add_LifecycleServiceServicer_to_server(
            LifecycleServicer(self.operator), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if self.config.operator.reflection:
            reflection.enable_server_reflection(
                (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME),
                self._server,
            )

        # One operator per data directory: a second one would adopt and
        # restart the same workloads, and run two copies of each.
        self._lock = _lock_data_dir(self.config.operator.data_dir)

        listen = self.config.operator.listen
        try:
            if self._tls is None:
                self.port = self._server.add_insecure_port(listen)
            else:
                self.port = self._server.add_secure_port(listen, self._tls)
        except RuntimeError as error:
            self._unlock()
            raise StartupError(
                f"cannot listen on {listen}: is another program using it? "
                "choose another address with --listen or CORRAL_LISTEN"
            ) from error
        self.operator.advertise_addr = self.address

        await self.operator.open()
        await self._server.start()
        for service in ("", *SERVICE_NAMES):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "corral serving",
            extra={
                "address": self.address,
                "runtime": self.operator.runtime_name,
                "tls": self._tls is not None,
                "tokens": self.credentials.enabled,
            },
        )

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown; workloads keep running."""
        grace = (
            self.config.operator.shutdown_grace.total_seconds()
            if grace is None
            else grace
        )
        await self._health.enter_graceful_shutdown()
        # End event streams first, so their clients resume elsewhere.
        self.operator.hub.close()
        await self._server.stop(grace)
        await self.operator.close()
        self.store.close()
        self._unlock()
        logger.info("corral stopped")

    async def wait_for_termination(self) -> None:
        """Serves until SIGTERM or SIGINT, then shuts down gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        await self.stop()
