"""Friendly sync and asyncio clients over the generated stubs.

Each RPC of ``OperatorService`` and ``LifecycleService`` has one method,
named in snake_case, with keyword-only options and the contract's messages as
results. Failed calls raise the typed errors of :mod:`corral.sdk._errors`.
The generated stubs stay reachable as ``client.operator`` and
``client.lifecycle`` for anything the methods do not cover.

Where the client connects, in order: the ``address`` argument, the
``CORRAL_ADDR`` environment variable, then ``127.0.0.1:50051``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal, TypeVar, overload

import grpc

from corral.sdk import _requests
from corral.sdk._errors import from_rpc_error
from corral.sdk._requests import EventTypeLike, ReportTypeLike
from corral.sdk._specs import Duration, SpecLike
from corral.sdk._watch import AsyncEventWatch, EventWatch, _WatchCore
from corral.v1 import (
    container_pb2,
    event_pb2,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
)

DEFAULT_ADDRESS = "127.0.0.1:50051"
"""Where corral listens unless told otherwise (its own default ``listen``)."""

ADDRESS_ENV = "CORRAL_ADDR"
"""Environment variable naming corral's address; corral sets it for workloads."""

DEFAULT_TIMEOUT = 30.0
"""Seconds a unary call may take: generous, since a stop waits out a grace period."""

_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    # Find a restarted operator within about two seconds, not gRPC's default
    # of up to two minutes, so a resuming watch or a report retry gets through.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

Event = event_pb2.Event
Heartbeat = operator_pb2.Heartbeat

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclasses.dataclass(frozen=True)
class _Connection:
    """Where and how to connect; shared by both clients."""

    address: str
    metadata: tuple[tuple[str, str], ...]
    credentials: grpc.ChannelCredentials | None
    options: tuple[tuple[str, Any], ...]
    timeout: float | None

    @classmethod
    def resolve(
        cls,
        address: str | None,
        token: str | None,
        tls: bool | None,
        root_certificates: bytes | None,
        private_key: bytes | None,
        certificate_chain: bytes | None,
        timeout: float | None,
        options: Sequence[tuple[str, Any]],
    ) -> _Connection:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        given = (root_certificates, private_key, certificate_chain)
        credentials = None
        if tls or (tls is None and any(c is not None for c in given)):
            credentials = grpc.ssl_channel_credentials(*given)
        return cls(
            address=address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS,
            metadata=metadata,
            credentials=credentials,
            options=(*_CHANNEL_OPTIONS, *options),
            timeout=timeout,
        )


class Client:
    """A blocking client for corral.

    Args:
        address: ``host:port`` of corral; defaults to ``$CORRAL_ADDR``, then
            ``127.0.0.1:50051``.
        token: sent as ``authorization: Bearer <token>`` on every call.
        tls: use TLS; implied when any certificate argument is given. With
            no ``root_certificates`` the system's roots are trusted.
        root_certificates: PEM roots that sign the server's certificate.
        private_key: PEM client key, for mutual TLS.
        certificate_chain: PEM client certificate chain, for mutual TLS.
        timeout: seconds each unary call may take; ``None`` waits forever.
            Event watches are never timed out.
        options: extra gRPC channel options.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        tls: bool | None = None,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._conn = _Connection.resolve(
            address,
            token,
            tls,
            root_certificates,
            private_key,
            certificate_chain,
            timeout,
            options,
        )
        if self._conn.credentials is None:
            self._channel = grpc.insecure_channel(
                self._conn.address, options=self._conn.options
            )
        else:
            self._channel = grpc.secure_channel(
                self._conn.address, self._conn.credentials, options=self._conn.options
            )
        self.operator = operator_pb2_grpc.OperatorServiceStub(self._channel)
        """The generated ``OperatorService`` stub on this client's channel."""
        self.lifecycle = lifecycle_pb2_grpc.LifecycleServiceStub(self._channel)
        """The generated ``LifecycleService`` stub on this client's channel."""
        self._closed = False

    @property
    def address(self) -> str:
        """The address this client connects to."""
        return self._conn.address

    def close(self) -> None:
        """Closes the channel; in-flight calls and watches are cancelled."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _unary(
        self, rpc: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req
    ) -> Resp:
        if self._closed:
            raise RuntimeError("this corral client is closed; create a new one")
        try:
            return rpc(
                request, timeout=self._conn.timeout, metadata=self._conn.metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    # -- OperatorService ----------------------------------------------------

    def start_container(
        self,
        name: str,
        spec: SpecLike | None = None,
        *,
        force: bool = False,
        request_id: str = "",
    ) -> container_pb2.Container:
        """Starts a container, creating or updating it when ``spec`` is given.

        Args:
            name: the container's name.
            spec: a ``ContainerSpec`` or a fleet-file style dict; ``None``
                starts the existing record.
            force: start even while crash looping (the history is kept).
            request_id: makes a retried request a no-op.

        Returns:
            The container after the start.

        Raises:
            ContainerNotFoundError: no such container and no spec given.
            CrashLoopDetectedError: crash looping and ``force`` not set.
            AdHocContainerNotAllowedError: not in the fleet file, and the
                operator refuses ad-hoc containers.
            InvalidArgumentError: the name or spec is invalid.
        """
        request = _requests.start(name, spec, force, request_id)
        reply = self._unary(self.operator.StartContainer, request)
        return reply.container

    def stop_container(
        self, name: str, *, grace_period: Duration | None = None
    ) -> container_pb2.Container:
        """Stops a container and keeps it stopped until started again.

        Args:
            name: the container's name.
            grace_period: overrides the spec's time between the stop signal
                and SIGKILL, such as ``"5s"``.

        Returns:
            The container after the stop.
        """
        request = _requests.stop(name, grace_period)
        reply = self._unary(self.operator.StopContainer, request)
        return reply.container

    def restart_container(self, name: str) -> container_pb2.Container:
        """Stops the running instance, if any, and starts a new one."""
        request = operator_pb2.RestartContainerRequest(name=name)
        reply = self._unary(self.operator.RestartContainer, request)
        return reply.container

    def get_container(self, name: str) -> container_pb2.Container:
        """Returns one container.

        Raises:
            ContainerNotFoundError: no such container.
        """
        request = operator_pb2.GetContainerRequest(name=name)
        reply = self._unary(self.operator.GetContainer, request)
        return reply.container

    def list_containers(
        self, *, filter: str = "", page_size: int = 0
    ) -> list[container_pb2.Container]:
        """Lists every matching container in name order, reading all pages.

        Args:
            filter: space-separated terms that must all hold, such as
                ``"state=RUNNING label.team=web name=api-*"``.
            page_size: containers per round trip; 0 is the server's default.
        """
        containers: list[container_pb2.Container] = []
        token = ""
        while True:
            request = operator_pb2.ListContainersRequest(
                filter=filter, page_size=page_size, page_token=token
            )
            reply = self._unary(self.operator.ListContainers, request)
            containers.extend(reply.containers)
            token = reply.next_page_token
            if not token:
                return containers

    def delete_container(self, name: str) -> None:
        """Deletes a stopped ad-hoc container.

        Raises:
            ContainerNotStoppedError: it is still running; stop it first.
            MinReplicaSetContainerError: it is declared in the fleet file.
        """
        request = operator_pb2.DeleteContainerRequest(name=name)
        self._unary(self.operator.DeleteContainer, request)

    def clear_crash_history(self, name: str) -> container_pb2.Container:
        """Forgets the crash history, re-arming the crash-loop breaker."""
        request = operator_pb2.ClearCrashHistoryRequest(name=name)
        reply = self._unary(self.operator.ClearCrashHistory, request)
        return reply.container

    def reconcile_fleet(self) -> operator_pb2.ReconcileFleetResponse:
        """Runs one reconciliation pass over the min replica set now."""
        request = operator_pb2.ReconcileFleetRequest()
        return self._unary(self.operator.ReconcileFleet, request)

    def get_operator_info(self) -> operator_pb2.GetOperatorInfoResponse:
        """Describes the operator: version, runtime, min replica set, settings."""
        request = operator_pb2.GetOperatorInfoRequest()
        return self._unary(self.operator.GetOperatorInfo, request)

    def list_events(
        self,
        *,
        after_sequence: int = 0,
        names: Iterable[str] = (),
        page_size: int = 0,
    ) -> list[event_pb2.Event]:
        """Reads the event log after ``after_sequence`` up to its head.

        Args:
            after_sequence: return events with a greater sequence.
            names: only events about these containers; empty means all.
            page_size: events per round trip; 0 is the server's default.
        """
        events: list[event_pb2.Event] = []
        token = ""
        wanted = list(names)
        while True:
            request = operator_pb2.ListEventsRequest(
                after_sequence=after_sequence,
                names=wanted,
                page_size=page_size,
                page_token=token,
            )
            reply = self._unary(self.operator.ListEvents, request)
            events.extend(reply.events)
            token = reply.next_page_token
            if not token:
                return events

    @overload
    def watch_events(
        self,
        after_sequence: int = 0,
        names: Iterable[str] = (),
        types: Iterable[EventTypeLike] = (),
        *,
        resume: bool = True,
        heartbeats: Literal[False] = False,
        reconnect_timeout: float | None = None,
    ) -> EventWatch[Event]: ...

    @overload
    def watch_events(
        self,
        after_sequence: int = 0,
        names: Iterable[str] = (),
        types: Iterable[EventTypeLike] = (),
        *,
        resume: bool = True,
        heartbeats: Literal[True],
        reconnect_timeout: float | None = None,
    ) -> EventWatch[Event | Heartbeat]: ...

    def watch_events(
        self,
        after_sequence: int = 0,
        names: Iterable[str] = (),
        types: Iterable[EventTypeLike] = (),
        *,
        resume: bool = True,
        heartbeats: bool = False,
        reconnect_timeout: float | None = None,
    ) -> EventWatch[Any]:
        """Follows the event log: the events after ``after_sequence``, then
        live ones, resuming by itself when the stream breaks.

        Args:
            after_sequence: send the events with a greater sequence.
            names: only events about these containers; empty means all.
            types: only events of these types (``EventType`` values or names
                such as ``"READY"``); empty means all.
            resume: reconnect after UNAVAILABLE or a lost connection and
                continue after the last event seen; ``False`` raises instead.
            heartbeats: also yield the server's ``Heartbeat`` messages.
            reconnect_timeout: give up (raising the last error) after this
                many seconds of failed reconnects; ``None`` never gives up.

        Returns:
            A blocking iterator of ``Event`` (and ``Heartbeat``) messages.
            Iterating it raises :class:`CursorOutOfRangeError` when the log
            no longer holds ``after_sequence``.
        """
        core = _WatchCore(
            after_sequence,
            names,
            types,
            resume=resume,
            heartbeats=heartbeats,
            reconnect_timeout=reconnect_timeout,
        )
        return EventWatch(self._open_watch, core)

    def _open_watch(self, request: operator_pb2.WatchEventsRequest) -> Any:
        if self._closed:
            raise RuntimeError("this corral client is closed; create a new one")
        return iter(self.operator.WatchEvents(request, metadata=self._conn.metadata))

    # -- LifecycleService ---------------------------------------------------

    def report_event(
        self,
        name: str,
        instance_id: str,
        type: ReportTypeLike,
        *,
        event_id: str = "",
        exit_code: int | None = None,
        message: str = "",
        retry_after: Duration | None = None,
    ) -> lifecycle_pb2.ReportEventResponse:
        """Reports a workload's lifecycle (what :class:`Workload` sends).

        Needs the instance's ``CORRAL_TOKEN`` as this client's ``token``.

        Args:
            name: the container's name.
            instance_id: the reporting instance (``CORRAL_INSTANCE_ID``).
            type: ``"started"``, ``"stopped"``, ``"error"`` or a ``ReportType``.
            event_id: makes retries idempotent; empty picks a fresh uuid4
                (so pass your own to retry safely).
            exit_code: for ``stopped``.
            message: human-readable detail, such as the error.
            retry_after: for ``error``, the restart delay asked for.

        Raises:
            UnauthenticatedError: no token, or not one corral issued.
            PermissionDeniedError: the token is another instance's.
        """
        request = _requests.report(
            name,
            instance_id,
            type,
            event_id=event_id,
            exit_code=exit_code,
            message=message,
            retry_after=retry_after,
        )
        return self._unary(self.lifecycle.ReportEvent, request)


class AsyncClient:
    """An asyncio client for corral, with the same methods as :class:`Client`.

    Args:
        address: ``host:port`` of corral; defaults to ``$CORRAL_ADDR``, then
            ``127.0.0.1:50051``.
        token: sent as ``authorization: Bearer <token>`` on every call.
        tls: use TLS; implied when any certificate argument is given. With
            no ``root_certificates`` the system's roots are trusted.
        root_certificates: PEM roots that sign the server's certificate.
        private_key: PEM client key, for mutual TLS.
        certificate_chain: PEM client certificate chain, for mutual TLS.
        timeout: seconds each unary call may take; ``None`` waits forever.
            Event watches are never timed out.
        options: extra gRPC channel options.

    Use it as an async context manager, or await :meth:`close`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        tls: bool | None = None,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._conn = _Connection.resolve(
            address,
            token,
            tls,
            root_certificates,
            private_key,
            certificate_chain,
            timeout,
            options,
        )
        if self._conn.credentials is None:
            self._channel = grpc.aio.insecure_channel(
                self._conn.address, options=list(self._conn.options)
            )
        else:
            self._channel = grpc.aio.secure_channel(
                self._conn.address,
                self._conn.credentials,
                options=list(self._conn.options),
            )
        self.operator = operator_pb2_grpc.OperatorServiceStub(self._channel)
        """The generated ``OperatorService`` stub (asyncio) on this channel."""
        self.lifecycle = lifecycle_pb2_grpc.LifecycleServiceStub(self._channel)
        """The generated ``LifecycleService`` stub (asyncio) on this channel."""
        self._closed = False

    @property
    def address(self) -> str:
        """The address this client connects to."""
        return self._conn.address

    async def close(self) -> None:
        """Closes the channel; in-flight calls and watches are cancelled."""
        self._closed = True
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _unary(
        self, rpc: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], request: Req
    ) -> Resp:
        if self._closed:
            raise RuntimeError("this corral client is closed; create a new one")
        try:
            return await rpc(
                request, timeout=self._conn.timeout, metadata=self._conn.metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    # -- OperatorService ----------------------------------------------------

    async def start_container(
        self,
        name: str,
        spec: SpecLike | None = None,
        *,
        force: bool = False,
        request_id: str = "",
    ) -> container_pb2.Container:
        """Starts a container; see :meth:`Client.start_container`."""
        request = _requests.start(name, spec, force, request_id)
        reply = await self._unary(self.operator.StartContainer, request)
        return reply.container

    async def stop_container(
        self, name: str, *, grace_period: Duration | None = None
    ) -> container_pb2.Container:
        """Stops a container; see :meth:`Client.stop_container`."""
        request = _requests.stop(name, grace_period)
        reply = await self._unary(self.operator.StopContainer, request)
        return reply.container

    async def restart_container(self, name: str) -> container_pb2.Container:
        """Stops the running instance, if any, and starts a new one."""
        request = operator_pb2.RestartContainerRequest(name=name)
        reply = await self._unary(self.operator.RestartContainer, request)
        return reply.container

    async def get_container(self, name: str) -> container_pb2.Container:
        """Returns one container; raises :class:`ContainerNotFoundError`."""
        request = operator_pb2.GetContainerRequest(name=name)
        reply = await self._unary(self.operator.GetContainer, request)
        return reply.container

    async def list_containers(
        self, *, filter: str = "", page_size: int = 0
    ) -> list[container_pb2.Container]:
        """Lists every matching container; see :meth:`Client.list_containers`."""
        containers: list[container_pb2.Container] = []
        token = ""
        while True:
            request = operator_pb2.ListContainersRequest(
                filter=filter, page_size=page_size, page_token=token
            )
            reply = await self._unary(self.operator.ListContainers, request)
            containers.extend(reply.containers)
            token = reply.next_page_token
            if not token:
                return containers

    async def delete_container(self, name: str) -> None:
        """Deletes a stopped ad-hoc container; see :meth:`Client.delete_container`."""
        request = operator_pb2.DeleteContainerRequest(name=name)
        await self._unary(self.operator.DeleteContainer, request)

    async def clear_crash_history(self, name: str) -> container_pb2.Container:
        """Forgets the crash history, re-arming the crash-loop breaker."""
        request = operator_pb2.ClearCrashHistoryRequest(name=name)
        reply = await self._unary(self.operator.ClearCrashHistory, request)
        return reply.container

    async def reconcile_fleet(self) -> operator_pb2.ReconcileFleetResponse:
        """Runs one reconciliation pass over the min replica set now."""
        request = operator_pb2.ReconcileFleetRequest()
        return await self._unary(self.operator.ReconcileFleet, request)

    async def get_operator_info(self) -> operator_pb2.GetOperatorInfoResponse:
        """Describes the operator: version, runtime, min replica set, settings."""
        request = operator_pb2.GetOperatorInfoRequest()
        return await self._unary(self.operator.GetOperatorInfo, request)

    async def list_events(
        self,
        *,
        after_sequence: int = 0,
        names: Iterable[str] = (),
        page_size: int = 0,
    ) -> list[event_pb2.Event]:
        """Reads the event log up to its head; see :meth:`Client.list_events`."""
        events: list[event_pb2.Event] = []
        token = ""
        wanted = list(names)
        while True:
            request = operator_pb2.ListEventsRequest(
                after_sequence=after_sequence,
                names=wanted,
                page_size=page_size,
                page_token=token,
            )
            reply = await self._unary(self.operator.ListEvents, request)
            events.extend(reply.events)
            token = reply.next_page_token
            if not token:
                return events

    @overload
    def watch_events(
        self,
        after_sequence: int = 0,
        names: Iterable[str] = (),
        types: Iterable[EventTypeLike] = (),
        *,
        resume: bool = True,
        heartbeats: Literal[False] = False,
        reconnect_timeout: float | None = None,
    ) -> AsyncEventWatch[Event]: ...

    @overload
    def watch_events(
        self,
        after_sequence: int = 0,
        names: Iterable[str] = (),
        types: Iterable[EventTypeLike] = (),
        *,
        resume: bool = True,
        heartbeats: Literal[True],
        reconnect_timeout: float | None = None,
    ) -> AsyncEventWatch[Event | Heartbeat]: ...

    def watch_events(
        self,
        after_sequence: int = 0,
        names: Iterable[str] = (),
        types: Iterable[EventTypeLike] = (),
        *,
        resume: bool = True,
        heartbeats: bool = False,
        reconnect_timeout: float | None = None,
    ) -> AsyncEventWatch[Any]:
        """Follows the event log, resuming by itself; use ``async for``.

        Same arguments as :meth:`Client.watch_events`. Not a coroutine: the
        stream opens on the first iteration.
        """
        core = _WatchCore(
            after_sequence,
            names,
            types,
            resume=resume,
            heartbeats=heartbeats,
            reconnect_timeout=reconnect_timeout,
        )
        return AsyncEventWatch(self._open_watch, core)

    def _open_watch(self, request: operator_pb2.WatchEventsRequest) -> Any:
        if self._closed:
            raise RuntimeError("this corral client is closed; create a new one")
        return self.operator.WatchEvents(request, metadata=self._conn.metadata)

    # -- LifecycleService ---------------------------------------------------

    async def report_event(
        self,
        name: str,
        instance_id: str,
        type: ReportTypeLike,
        *,
        event_id: str = "",
        exit_code: int | None = None,
        message: str = "",
        retry_after: Duration | None = None,
    ) -> lifecycle_pb2.ReportEventResponse:
        """Reports a workload's lifecycle; see :meth:`Client.report_event`."""
        request = _requests.report(
            name,
            instance_id,
            type,
            event_id=event_id,
            exit_code=exit_code,
            message=message,
            retry_after=retry_after,
        )
        return await self._unary(self.lifecycle.ReportEvent, request)
