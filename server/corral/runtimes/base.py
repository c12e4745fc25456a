"""The interface every runtime implements, and the types it exchanges.

A runtime runs workloads and tells the operator when one ends; it makes no
policy decision. The operator calls :meth:`Runtime.start`, :meth:`Runtime.stop`
and :meth:`Runtime.adopt`; the runtime calls the ``on_exit`` callback it was
built with, exactly once per instance that ended, whoever caused the end.
Runtimes never import gRPC, the store or each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple, Protocol

from corral.core.model import ContainerSpec, ExitInfo


class WorkloadStartError(Exception):
    """The workload could not be started: command or image missing, not
    executable, bad working directory. The message says what to fix."""


class RuntimeUnavailableError(Exception):
    """The runtime itself cannot be reached (for example the Docker engine is
    down); the caller may retry later."""


@dataclasses.dataclass(frozen=True)
class LaunchRequest:
    """Everything a runtime needs to start one instance."""

    name: str
    instance_id: str
    spec: ContainerSpec
    env: Mapping[str, str]
    """The complete, resolved environment of the workload."""


@dataclasses.dataclass(frozen=True)
class RuntimeHandle:
    """A running instance as the runtime identifies it."""

    runtime_id: str
    """The pid, or the Docker container id."""
    identity: str
    """Opaque text the runtime uses to recognise this exact instance later,
    persisted by the operator and handed back to :meth:`Runtime.adopt`."""
    started_at: datetime


class Orphan(NamedTuple):
    """A workload labelled as corral's whose instance no record knows."""

    runtime_id: str
    name: str
    """The container name it was started for."""
    instance_id: str


class ExitCallback(Protocol):
    """Called on the event loop when an instance has ended."""

    def __call__(self, name: str, instance_id: str, exit: ExitInfo) -> None: ...


class Runtime(Protocol):
    """Runs workloads. All methods are called from the operator's event loop."""

    name: str

    async def start(self, request: LaunchRequest) -> RuntimeHandle:
        """Starts one instance and begins watching it.

        Raises:
            WorkloadStartError: the workload cannot be started.
            RuntimeUnavailableError: the runtime cannot be reached.
        """
        ...

    async def stop(
        self, name: str, instance_id: str, signal: int, grace: float
    ) -> None:
        """Sends ``signal`` to the instance (the whole process group or
        container), waits up to ``grace`` seconds, then kills it. Returns once
        the instance is gone; its exit is still delivered through ``on_exit``.
        Stopping an instance that already ended is not an error."""
        ...

    async def adopt(
        self, name: str, instance_id: str, runtime_id: str, identity: str
    ) -> RuntimeHandle | None:
        """Takes over watching an instance started by an earlier operator
        process. Returns its handle when that exact instance still runs,
        ``None`` when it is gone (the caller treats it as an unknown exit)."""
        ...

    def is_running(self, name: str, instance_id: str) -> bool:
        """True while the runtime watches a live instance with that id."""
        ...

    @property
    def available(self) -> bool:
        """False while the runtime cannot be reached (an engine outage)."""
        ...

    def last_exit(self, instance_id: str) -> ExitInfo | None:
        """How an instance that :meth:`adopt` found ended really ended, when
        the runtime can tell; None otherwise."""
        ...

    async def orphans(self, known_instances: set[str]) -> list[Orphan]:
        """Workloads of corral's that no record knows (started by an
        operator that died before recording them)."""
        ...

    async def remove(self, runtime_id: str) -> None:
        """Kills and removes one orphan; one already gone is not an error."""
        ...

    async def release(self, name: str) -> None:
        """Frees what the runtime keeps for a container between its instances
        (the docker runtime's network sandbox and host ports), unless an
        instance runs. Corral calls it when a container stops for good."""
        ...

    async def close(self) -> None:
        """Stops watching. Workloads keep running: corral's own restart must
        not restart the fleet."""
        ...
