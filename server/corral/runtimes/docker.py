"""The docker runtime: every workload is a Docker container.

The runtime talks to the Docker Engine API through aiodocker. Each instance
is one container named ``corral-<name>-<instance_id[:12]>`` and labelled
``corral.managed=true``, ``corral.name=<name>`` and
``corral.instance=<instance_id>`` (next to the spec's own labels). It has no
restart policy: restarting is corral's decision, never the engine's.

Exits are events, not a polling tick. One guarded background task follows
the engine's event stream, filtered to the ``die`` and ``oom`` events of
corral's containers. A ``die`` *claims* the watched instance (the claim is
what makes ``on_exit`` happen exactly once, whoever notices the end first),
the exit is classified, ``on_exit`` is called, and then the container is
removed so nothing is left behind. ``stop`` awaits the same claim. The
``die`` event carries the exit code and an ``oom`` event precedes it for an
OOM kill, so the container is inspected (for ``State.OOMKilled``) only when
that is not conclusive: a status of 137 with no ``oom`` event, or no status.
Inspecting right after ``die`` costs about 50 ms, which is why it is skipped.

Nothing is lost while the stream is down. Each connection asks the engine to
replay events from shortly before the previous one ended (``since``), which
also covers the moment between subscribing and the stream being open; after
the engine itself comes back (its event buffer is gone), every watched
container is inspected once and those that died meanwhile are settled. While
the engine is unreachable :attr:`DockerRuntime.available` is False and
:meth:`DockerRuntime.is_running` answers from the last known state.

How an exit is classified, from the container's ``State``:

- ``OOMKilled``: :attr:`ExitReason.OOM_KILLED` (signal 9), distinct from a
  SIGKILL sent by anyone else.
- exit code 129 to 128+SIGRTMAX: :attr:`ExitReason.SIGNALED` with signal
  ``code - 128``. The engine reports a process killed by signal N as
  128 + N, so a process that calls ``exit(130)`` itself is indistinguishable
  from one killed by SIGINT; we take the signal reading, as shells do.
- anything else: :attr:`ExitReason.EXITED` with the code.

Each corral container has a network *sandbox*: one long-lived container,
``corral-<name>-sandbox`` (label ``corral.role=sandbox``), that runs the
pause image of :mod:`corral.runtimes.pause`, owns the network namespace and
publishes the spec's ports. Every instance joins it
(``NetworkMode: container:<sandbox>``). A replacement then starts without the
engine creating a network namespace while it tears down the dead one's, which
takes a start from about 370 ms to about 80 ms here, and the container keeps
its address and host ports across restarts. The sandbox is created with the
first instance, recreated when the spec's ports or labels change, removed by
:meth:`DockerRuntime.release` (corral calls it when a container stops for
good) or after :data:`_SANDBOX_IDLE` seconds without an instance. If a
sandbox dies under a running instance, the instance has lost its network: it
is killed, and its exit says why.

After an operator restart, ``adopt`` finds the instance's container by its
``corral.instance`` label. A container that ended while corral was down is
inspected for its real exit, which :meth:`DockerRuntime.last_exit` returns,
and removed; ``adopt`` then returns None like for any instance that is gone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from datetime import UTC, datetime
from signal import SIGKILL, valid_signals
from types import TracebackType
from typing import Any, Self

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer
from aiodocker.events import DockerEvents

from corral.core.model import ContainerSpec, ExitInfo, ExitReason
from corral.core.specs import RESERVED_LABELS, parse_memory, parse_port
from corral.core.tasks import spawn
from corral.runtimes import pause
from corral.runtimes.base import (
    ExitCallback,
    LaunchRequest,
    Orphan,
    RuntimeHandle,
    RuntimeUnavailableError,
    WorkloadStartError,
)

__all__ = [
    "LABEL_INSTANCE",
    "LABEL_MANAGED",
    "LABEL_NAME",
    "LABEL_ROLE",
    "ROLE_SANDBOX",
    "DockerRuntime",
    "Orphan",
]

logger = logging.getLogger(__name__)

LABEL_MANAGED = "corral.managed"
"""Set to ``true`` on every container corral creates."""
LABEL_NAME = "corral.name"
"""The corral container name the instance belongs to."""
LABEL_INSTANCE = "corral.instance"
"""The instance id; adoption finds a container by it."""
LABEL_ROLE = "corral.role"
"""``sandbox`` on the container holding a corral container's network."""
ROLE_SANDBOX = "sandbox"
LABEL_SANDBOX_CONFIG = "corral.sandbox"
"""A digest of the spec fields the sandbox was made from (ports, labels)."""

_DEFAULT_HOST = "unix:///var/run/docker.sock"
_UNREACHABLE = 900
"""aiodocker's made-up status for "cannot connect to the engine"."""

_REQUEST_TIMEOUT = 30.0
"""Seconds one Engine API request may take. Creating, starting, killing and
removing a container take well under a second on a healthy engine; an engine
that needs longer is treated as unreachable."""

_KILL_EVENT_TIMEOUT = 5.0
"""Seconds ``stop`` waits for the ``die`` event after SIGKILL before asking
the engine directly (the event stream may be down)."""

_KILL_TIMEOUT = 30.0
"""Seconds ``stop`` waits for the engine to report the container stopped
after SIGKILL. Only a process stuck in uninterruptible sleep outlives it."""

_RECONNECT_INITIAL = 0.1
"""First delay before reconnecting to the event stream: an engine restart
takes about a second, so the first tries come quickly."""
_RECONNECT_MAX = 5.0
"""Cap on the reconnect delay, so a returning engine is noticed within it."""
_STABLE_STREAM = 10.0
"""A stream that stayed open this long resets the reconnect delay."""

_REPLAY_MARGIN = 2
"""Seconds of events replayed before the last connection ended. ``since`` has
a one-second resolution and the engine's clock is the host's."""

_SANDBOX_IDLE = 30.0
"""Seconds a sandbox is kept without an instance before it is removed, so a
restart after a backoff below it still finds its network ready."""

_OOM_EVENT_WAIT = 0.5
"""Seconds a SIGKILLed container with a memory limit waits for a late
``oom`` event before its exit counts as a plain SIGKILL. The kernel's OOM
notice and the process's exit reach the engine separately, in either order."""

_RECENT_DIES = 1024
"""``die`` events of containers not (yet) watched that are remembered, so an
adoption racing the container's end still sees it."""

_HOST_VARIABLES = frozenset(
    {"PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH"}
)
"""The operator variables ``corral.core.environment`` passes through to every
workload. They describe the host, not the image, so a container keeps its
image's own values unless the spec's ``env`` sets them."""

_EVENT_FILTER = json.dumps(
    {"type": ["container"], "event": ["die", "oom"], "label": [f"{LABEL_MANAGED}=true"]}
)
"""The events the runtime follows: ends and OOM kills of corral's containers."""
_VANISHED_MESSAGE = "the container was removed before its exit could be inspected"


@dataclasses.dataclass(frozen=True, slots=True)
class _Death:
    """What a ``die`` event tells about a container's end."""

    exit_code: int | None
    time: datetime

    def conclusive(self, oom_seen: bool) -> bool:
        """True when the event alone classifies the exit.

        Inspecting a container right after its ``die`` waits for the engine
        to finish tearing it down (about 50 ms with a bridge network), so it
        is skipped when the event says enough. Only a SIGKILL status without
        an ``oom`` event before it needs the engine's ``OOMKilled`` verdict.
        """
        if self.exit_code is None:
            return False

        return oom_seen or self.exit_code != 128 + SIGKILL

    def exit_info(self, instance_id: str, oom_seen: bool) -> ExitInfo:
        state = {
            "ExitCode": self.exit_code,
            "OOMKilled": oom_seen,
            "FinishedAt": self.time.isoformat(),
        }
        return _exit_from_state(state, instance_id)


@dataclasses.dataclass(eq=False, slots=True)
class _Watch:
    """One instance the runtime watches through the event stream."""

    name: str
    instance_id: str
    container_id: str
    launched: asyncio.Future[bool]
    """True once ``start`` (or ``adopt``) hands the instance to the operator,
    False when ``start`` fails and reports the failure itself."""
    exited: asyncio.Future[None]
    """Resolved once the exit was reported and the container removed."""
    handle: RuntimeHandle | None = None
    sandbox_id: str = ""
    """The sandbox whose network the instance joined; empty for none."""
    claimed: bool = False
    """Set by the first observer of the end; only it settles the instance."""
    lost_sandbox: bool = False
    """The sandbox died under the instance, so corral killed it."""
    memory_limited: bool = False
    """The container has a memory limit, so a SIGKILL may be the OOM killer's."""
    oom: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set by the container's ``oom`` event."""
    killed: bool = False
    """Corral itself sent SIGKILL, so a SIGKILL status is no OOM kill's."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Sandbox:
    """A running sandbox container this runtime uses for one corral container."""

    container_id: str
    digest: str


class DockerRuntime:
    """Runs each workload as a Docker container and reports its exits.

    Create it inside the running event loop and call every method from the
    loop's thread. It can be used as an async context manager that closes it.

    Args:
        on_exit: Called on the loop exactly once for every instance that ended.
        url: The engine's address. Without it, ``DOCKER_HOST``, then
            ``unix:///var/run/docker.sock``.
        network_sandbox: Run instances in a per-container network sandbox.
            Without it (or on an engine architecture with no pause program)
            each instance gets a network of its own, which makes every
            restart several times slower.
    """

    name: str = "docker"

    def __init__(
        self,
        *,
        on_exit: ExitCallback,
        url: str | None = None,
        network_sandbox: bool = True,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_exit = on_exit
        self._url = url or os.environ.get("DOCKER_HOST") or _DEFAULT_HOST
        self._docker = aiodocker.Docker(
            url=self._url,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=_REQUEST_TIMEOUT),
        )

        self._watches: dict[str, _Watch] = {}
        self._by_container: dict[str, _Watch] = {}
        self._recent_dies: collections.OrderedDict[str, _Death] = (
            collections.OrderedDict()
        )
        self._oom_seen: set[str] = set()
        self._last_exits: dict[str, ExitInfo] = {}
        self._unremoved: set[str] = set()
        """Ended containers whose removal failed; retried on reconnect."""
        self._settling: set[asyncio.Task[None]] = set()
        self._use_sandboxes = network_sandbox
        self._sandboxes: dict[str, _Sandbox] = {}
        self._name_locks: dict[str, asyncio.Lock] = {}
        self._idle_timers: dict[str, asyncio.TimerHandle] = {}
        self._pause_lock = asyncio.Lock()
        self._pause_loaded = False
        self._available = False
        self._closed = False

        self._events_task = spawn(
            self._follow_events_forever(time.time()),
            name="corral-docker-events",
            forever=True,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def available(self) -> bool:
        """True while the engine answers; False before it first did."""
        return self._available

    async def start(self, request: LaunchRequest) -> RuntimeHandle:
        """Creates and starts one container and begins watching it.

        The container joins its name's network sandbox, which is created (or
        recreated for changed ports or labels) first when needed.
        ``spec.command`` overrides the image's command; ``request.env`` is the
        environment, minus the operator's host variables (``PATH``, ``HOME``
        and the like) unless the spec's ``env`` names them.

        Raises:
            WorkloadStartError: the image is missing locally, the engine
                refused the spec (bad command, working directory, limits), or
                the sandbox cannot publish the spec's ports.
            RuntimeUnavailableError: the runtime is closed or the engine
                cannot be reached.
        """
        self._check_open()
        if request.instance_id in self._watches:
            raise ValueError(f"instance {request.instance_id!r} is already running")
        if not request.spec.image:
            raise WorkloadStartError(
                "spec.image is empty; the docker runtime needs an image to run"
            )
        async with self._name_lock(request.name):
            self._cancel_idle(request.name)
            try:
                return await self._start(request, retry=True)
            finally:
                self._arm_idle(request.name)

    async def _start(self, request: LaunchRequest, *, retry: bool) -> RuntimeHandle:
        spec = request.spec
        sandbox = await self._sandbox(request)
        config = _container_config(request, sandbox.container_id if sandbox else None)
        container_name = _container_name(request.name, request.instance_id)
        extra = {"workload": request.name, "instance_id": request.instance_id}

        # Create: the instance exists from here on, whatever happens next.
        async with self._engine():
            try:
                container = await self._docker.containers.create(
                    config, name=container_name
                )
            except aiodocker.DockerError as exc:
                if exc.status == _UNREACHABLE:
                    raise
                raise _create_error(spec.image, exc) from exc

        # Watch before starting, so even an instant exit finds its watch.
        watch = _Watch(
            name=request.name,
            instance_id=request.instance_id,
            container_id=container.id,
            launched=self._loop.create_future(),
            exited=self._loop.create_future(),
            sandbox_id=sandbox.container_id if sandbox else "",
            memory_limited=bool(spec.memory),
        )
        self._register(watch)
        launched = False
        try:
            failure = await self._start_container(container)
            if failure is not None:
                if sandbox is not None and not await self._running(
                    sandbox.container_id
                ):
                    # The sandbox died unseen (an engine restart): once more
                    # with a new one, after this container is gone.
                    await self._drop_sandbox(request.name, sandbox)
                    self._abandon(watch)
                    await asyncio.shield(watch.exited)
                    if retry:
                        return await self._start(request, retry=False)
                raise WorkloadStartError(
                    f"container for {request.name!r} cannot start: "
                    f"{failure.message}; check spec.command and spec.working_dir"
                ) from failure
            launched = True
        finally:
            if not launched and not watch.launched.done():
                self._abandon(watch)

        handle = RuntimeHandle(
            runtime_id=container.id,
            identity=_identity(container.id, request.instance_id),
            started_at=datetime.now(UTC),
        )
        watch.handle = handle
        watch.launched.set_result(True)
        logger.info(
            "workload started", extra={**extra, "container_id": container.id[:12]}
        )

        return handle

    async def stop(
        self, name: str, instance_id: str, signal: int, grace: float
    ) -> None:
        """Stops an instance: ``signal`` to the container, SIGKILL after ``grace``.

        Returns once the container is gone. The exit itself is reported
        through ``on_exit``. Stopping an unknown or already ended instance
        does nothing.

        Raises:
            ValueError: ``signal`` is not a valid signal number.
            RuntimeUnavailableError: the engine cannot be reached, or the
                runtime was closed while waiting.
        """
        watch = self._watches.get(instance_id)
        if watch is None or watch.name != name:
            logger.debug(
                "stop ignored: instance not running",
                extra={"workload": name, "instance_id": instance_id},
            )
            return
        if signal not in valid_signals():
            raise ValueError(f"invalid stop signal {signal}")
        if not self._available:
            # Known to be down: say so now rather than wait on it.
            raise RuntimeUnavailableError(
                f"cannot reach the Docker engine at {self._url} to stop {name!r}"
            )
        extra = {
            "workload": name,
            "instance_id": instance_id,
            "container_id": watch.container_id[:12],
        }

        # The polite signal, then the grace period.
        if not watch.claimed:
            logger.info("stopping workload", extra={**extra, "signal": signal})
            await self._kill(watch, signal)
            if await _wait_exited(watch, grace):
                return
            logger.info("workload outlived its grace period, killing it", extra=extra)
            await self._kill(watch, SIGKILL)

        # SIGKILL: the die event settles it, or the engine tells us directly.
        if await _wait_exited(watch, _KILL_EVENT_TIMEOUT):
            return
        if not await self._settle_when_stopped(watch):
            # The exit will still be delivered whenever the kernel lets it go.
            logger.error("workload survived SIGKILL", extra=extra)
            return
        await _wait_exited(watch, _KILL_TIMEOUT)

    async def adopt(
        self, name: str, instance_id: str, runtime_id: str, identity: str
    ) -> RuntimeHandle | None:
        """Watches an instance started by an earlier operator process.

        The container is found by its ``corral.instance`` label, so an empty
        ``runtime_id`` is fine. A container that is no longer running is
        inspected (its exit is then available from :meth:`last_exit`) and
        removed.

        Returns:
            The handle of the running instance, or None when it is gone.

        Raises:
            RuntimeUnavailableError: the runtime is closed or the engine
                cannot be reached.
        """
        self._check_open()
        existing = self._watches.get(instance_id)
        if existing is not None and existing.name == name and not existing.claimed:
            return existing.handle
        extra = {"workload": name, "instance_id": instance_id}

        # Find the instance's container by label; the recorded id breaks a tie.
        async with self._engine():
            listed = await self._docker.containers.list(
                all=True, filters=_label_filter(f"{LABEL_INSTANCE}={instance_id}")
            )
        ids = [container.id for container in listed]
        if not ids:
            logger.info("instance not adopted: no container", extra=extra)
            return None
        container_id = runtime_id if runtime_id in ids else ids[0]
        extra["container_id"] = container_id[:12]
        info = await self._inspect(container_id)
        if info is None:
            logger.info("instance not adopted: container is gone", extra=extra)
            return None

        # Ended while corral was down: keep its real exit, leave nothing behind.
        state = info.get("State", {})
        if not state.get("Running", False):
            exit_info = _exit_from_state(state, instance_id)
            self._last_exits[instance_id] = exit_info
            await self._remove_quietly(container_id)
            logger.info(
                "instance not adopted: container ended",
                extra={**extra, **_exit_fields(exit_info)},
            )
            return None

        handle = RuntimeHandle(
            runtime_id=container_id,
            identity=_identity(container_id, instance_id),
            started_at=_parse_time(state.get("StartedAt")) or datetime.now(UTC),
        )
        watch = _Watch(
            name=name,
            instance_id=instance_id,
            container_id=container_id,
            launched=self._loop.create_future(),
            exited=self._loop.create_future(),
            handle=handle,
            memory_limited=bool(info.get("HostConfig", {}).get("Memory")),
        )
        watch.launched.set_result(True)
        self._register(watch)
        network = str(info.get("HostConfig", {}).get("NetworkMode") or "")
        if network.startswith("container:"):
            await self._adopt_sandbox(watch, network.removeprefix("container:"))
        # A die processed while we were inspecting found no watch; use it now.
        death = self._recent_dies.pop(container_id, None)
        if death is not None:
            self._begin_settle(watch, death=death)
        logger.info("workload adopted", extra=extra)

        return handle

    def is_running(self, name: str, instance_id: str) -> bool:
        """True while the runtime watches a live instance with that id.

        While the engine is unreachable this is the last known state.
        """
        watch = self._watches.get(instance_id)
        return watch is not None and watch.name == name and not watch.claimed

    def last_exit(self, instance_id: str) -> ExitInfo | None:
        """The real exit of an instance ``adopt`` found ended, else None."""
        return self._last_exits.get(instance_id)

    async def orphans(self, known_instances: set[str]) -> list[Orphan]:
        """Lists corral's containers whose instance is neither known nor watched.

        Sandboxes are not orphans: one that no instance uses is removed once
        it has been idle for :data:`_SANDBOX_IDLE` seconds, a dead one now.

        Args:
            known_instances: the instance ids the operator's records hold.

        Raises:
            RuntimeUnavailableError: the runtime is closed or the engine
                cannot be reached.
        """
        self._check_open()
        async with self._engine():
            listed = await self._docker.containers.list(
                all=True, filters=_label_filter()
            )

        found: list[Orphan] = []
        for container in listed:
            labels = container["Labels"] or {}
            if labels.get(LABEL_ROLE) == ROLE_SANDBOX:
                await self._take_sandbox(container.id, labels, container["State"])
                continue
            instance_id = labels.get(LABEL_INSTANCE, "")
            if instance_id in known_instances or instance_id in self._watches:
                continue
            found.append(Orphan(container.id, labels.get(LABEL_NAME, ""), instance_id))

        return found

    async def remove(self, container_id: str) -> None:
        """Kills and removes a container; one already gone is not an error.

        Raises:
            RuntimeUnavailableError: the runtime is closed or the engine
                cannot be reached.
        """
        self._check_open()
        async with self._engine():
            try:
                await self._docker.containers.container(container_id).delete(force=True)
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise
        logger.info("container removed", extra={"container_id": container_id[:12]})

    async def release(self, name: str) -> None:
        """Removes ``name``'s network sandbox, unless an instance runs in it.

        Corral calls it when a container stops for good, so that its host
        ports are free again. A name without a sandbox is left alone, and a
        sandbox the engine cannot remove now is retried when it answers.

        Raises:
            RuntimeUnavailableError: the runtime is closed.
        """
        self._check_open()
        self._cancel_idle(name)
        async with self._name_lock(name):
            sandbox = self._sandboxes.get(name)
            if sandbox is None or self._has_instance(name):
                return
            try:
                # An instance this runtime does not watch (its adoption
                # failed) may still run in the sandbox.
                in_use = await self._runs_unwatched(name)
            except RuntimeUnavailableError:
                in_use = True
            if in_use:
                self._arm_idle(name)
                return
            del self._sandboxes[name]
            if not await self._remove_quietly(sandbox.container_id, retry=False):
                self._sandboxes[name] = sandbox  # Tried again when idle again.
                self._arm_idle(name)
                return
        logger.info(
            "network sandbox removed",
            extra={"workload": name, "container_id": sandbox.container_id[:12]},
        )

    async def close(self) -> None:
        """Stops watching and closes the client. The containers keep running."""
        if self._closed:
            return
        self._closed = True

        # The stream first, so nothing starts settling behind our back.
        for timer in self._idle_timers.values():
            timer.cancel()
        self._idle_timers.clear()
        self._events_task.cancel()
        await asyncio.wait({self._events_task})
        settling = list(self._settling)
        for task in settling:
            task.cancel()
        if settling:
            await asyncio.wait(settling)

        # Pending stops learn that nobody will see the exit any more; an
        # unsettled container stays behind for the next operator to adopt.
        for watch in list(self._watches.values()):
            self._forget(watch)
            if not watch.launched.done():
                watch.launched.set_result(False)
            if not watch.exited.done():
                watch.exited.set_exception(
                    RuntimeUnavailableError("the docker runtime was closed")
                )
                watch.exited.exception()  # Retrieved: nobody may be waiting.
        await self._docker.close()
        logger.debug("docker runtime closed", extra={"url": self._url})

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeUnavailableError("the docker runtime is closed")

    @contextlib.asynccontextmanager
    async def _engine(
        self, timeout: float | None = _REQUEST_TIMEOUT
    ) -> AsyncIterator[None]:
        """Bounds one exchange with the engine and translates its failures.

        Every aiodocker or aiohttp error that reaches it becomes
        :class:`RuntimeUnavailableError`: the engine cannot be reached, drops
        the connection, does not answer within ``timeout`` seconds, or fails
        in a way the caller did not handle. Callers interpret the statuses
        they expect (404, 409) inside the block and re-raise the rest.
        """
        try:
            async with asyncio.timeout(timeout):
                yield
        except aiodocker.DockerError as exc:
            if exc.status != _UNREACHABLE:
                self._set_available(True)
                raise RuntimeUnavailableError(
                    f"the Docker engine at {self._url} failed: "
                    f"[{exc.status}] {exc.message}"
                ) from exc
            self._set_available(False)
            raise RuntimeUnavailableError(
                f"cannot reach the Docker engine at {self._url}: {exc.message}; "
                "is dockerd running?"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            self._set_available(False)
            raise RuntimeUnavailableError(
                f"lost the connection to the Docker engine at {self._url}: {exc}"
            ) from exc
        except TimeoutError as exc:
            self._set_available(False)
            raise RuntimeUnavailableError(
                f"the Docker engine at {self._url} did not answer within "
                f"{_REQUEST_TIMEOUT:g} s"
            ) from exc
        else:
            self._set_available(True)

    def _set_available(self, available: bool) -> None:
        if available == self._available:
            return
        self._available = available
        if available:
            logger.info("docker engine reachable", extra={"url": self._url})
        else:
            logger.warning("docker engine unreachable", extra={"url": self._url})

    async def _inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect document; None when it no longer exists."""
        async with self._engine():
            try:
                return await self._docker.containers.container(container_id).show()
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise
                return None

    async def _start_container(
        self, container: DockerContainer
    ) -> aiodocker.DockerError | None:
        """Starts a created container.

        Returns:
            The engine's refusal, or None once the container started.

        Raises:
            RuntimeUnavailableError: the engine cannot be reached.
        """
        async with self._engine():
            try:
                await container.start()
            except aiodocker.DockerError as exc:
                if exc.status == _UNREACHABLE:
                    raise
                return exc

        return None

    async def _kill(self, watch: _Watch, signal: int) -> None:
        """Signals the container; one that already stopped is not an error."""
        if signal == SIGKILL:
            watch.killed = True
        async with self._engine():
            try:
                await self._docker.containers.container(watch.container_id).kill(
                    signal=str(signal)
                )
            except aiodocker.DockerError as exc:
                # 404: removed; 409: not running. Either way its end is coming.
                if exc.status not in (404, 409):
                    raise

    async def _remove_quietly(self, container_id: str, *, retry: bool = True) -> bool:
        """Removes a container; failures only cost a leftover.

        Args:
            retry: remember a failed removal and retry it when the engine is
                back (sandboxes say False: they may be reused meanwhile).

        Returns:
            True when the container is gone.
        """
        extra = {"container_id": container_id[:12]}
        container = self._docker.containers.container(container_id)
        try:
            async with self._engine():
                try:
                    await container.delete(force=True)
                except aiodocker.DockerError as exc:
                    if exc.status == 409:
                        # Already being removed (by an earlier request whose
                        # caller went away): wait for that removal instead.
                        await _wait_removed(container)
                    elif exc.status != 404:
                        raise
        except RuntimeUnavailableError as exc:
            # Retried when the engine is back (if we are still running then).
            if retry:
                self._unremoved.add(container_id)
            logger.warning(
                "cannot remove container", extra={**extra, "error": str(exc)}
            )
            return False
        self._unremoved.discard(container_id)

        return True

    # -- network sandboxes -------------------------------------------------------

    async def _sandbox(self, request: LaunchRequest) -> _Sandbox | None:
        """The running sandbox ``request``'s instance joins, made when needed.

        Called with the name's lock held. None when sandboxes are off.

        Raises:
            WorkloadStartError: the sandbox cannot publish the spec's ports.
            RuntimeUnavailableError: the engine cannot be reached.
        """
        if not await self._sandboxes_usable():
            return None
        name = request.name
        digest = _sandbox_digest(request.spec)
        known = self._sandboxes.get(name)
        if known is not None and known.digest == digest:
            return known

        # Unknown here (a first start, an operator restart) or out of date.
        # Forgotten first, so removing an old one is not taken for a loss.
        self._sandboxes.pop(name, None)
        async with self._engine():
            listed = await self._docker.containers.list(
                all=True,
                filters=_label_filter(
                    f"{LABEL_NAME}={name}", f"{LABEL_ROLE}={ROLE_SANDBOX}"
                ),
            )
        found: _Sandbox | None = None
        for container in listed:
            labels = container["Labels"] or {}
            reusable = (
                labels.get(LABEL_SANDBOX_CONFIG) == digest
                and container["State"] == "running"
                and container.id not in self._unremoved
            )
            if found is None and reusable:
                found = _Sandbox(container.id, digest)
            else:
                await self._remove_quietly(container.id)
        if found is None:
            try:
                found = await self._create_sandbox(request, digest)
            except WorkloadStartError:
                if self._use_sandboxes:
                    raise
                return None  # The pause image was refused just now: no sandboxes.
        self._sandboxes[name] = found

        return found

    async def _create_sandbox(
        self, request: LaunchRequest, digest: str, *, retry: bool = True
    ) -> _Sandbox:
        """Creates and starts a sandbox; a failed one is removed again.

        A leftover of corral's under the sandbox's name is removed, and a
        pause image that vanished (``docker image prune``) is loaded again,
        each once before giving up.
        """
        name = request.name
        config = _sandbox_config(request, digest)
        refusal: aiodocker.DockerError | None = None
        async with self._engine():
            try:
                container = await self._docker.containers.create(
                    config, name=_sandbox_name(name)
                )
            except aiodocker.DockerError as exc:
                if exc.status == _UNREACHABLE:
                    raise
                refusal = exc
        if refusal is not None:
            if retry and await self._clear_way_for_sandbox(name, refusal):
                return await self._create_sandbox(request, digest, retry=False)
            raise WorkloadStartError(
                f"the network sandbox of {name!r} cannot be created: {refusal.message}"
            ) from refusal
        try:
            failure = await self._start_container(container)
        except RuntimeUnavailableError:
            await self._remove_quietly(container.id)
            raise
        if failure is not None:
            await self._remove_quietly(container.id)
            raise WorkloadStartError(
                f"the network sandbox of {name!r} cannot start: {failure.message}; "
                "check spec.ports (is a host port already in use?)"
            ) from failure
        logger.info(
            "network sandbox started",
            extra={"workload": name, "container_id": container.id[:12]},
        )

        return _Sandbox(container.id, digest)

    async def _clear_way_for_sandbox(
        self, name: str, refusal: aiodocker.DockerError
    ) -> bool:
        """Removes what made a sandbox's creation fail, when it can.

        Returns:
            True when creating it again may succeed.
        """
        if refusal.status == 404 and "image" in refusal.message.lower():
            self._pause_loaded = False
            return await self._sandboxes_usable()
        if refusal.status != 409:
            return False
        info = await self._inspect(_sandbox_name(name))
        labels = (info or {}).get("Config", {}).get("Labels") or {}
        if info is None or labels.get(LABEL_ROLE) != ROLE_SANDBOX:
            return info is None  # Gone meanwhile; someone else's stays.
        self._on_sandbox_died(name, str(info["Id"]))
        return await self._remove_quietly(str(info["Id"]), retry=False)

    async def _runs_unwatched(self, name: str) -> bool:
        """True when an instance of ``name`` runs that this runtime does not
        watch."""
        async with self._engine():
            listed = await self._docker.containers.list(
                filters=_label_filter(f"{LABEL_NAME}={name}", LABEL_INSTANCE)
            )
        return any(container.id not in self._by_container for container in listed)

    async def _sandboxes_usable(self) -> bool:
        """Loads the pause image once; False when sandboxes are off or the
        engine's architecture has no pause program."""
        if not self._use_sandboxes or self._pause_loaded:
            return self._use_sandboxes
        async with self._pause_lock:
            if self._pause_loaded:
                return self._use_sandboxes
            async with self._engine():
                try:
                    await self._docker.images.inspect(pause.PAUSE_IMAGE)
                except aiodocker.DockerError as exc:
                    if exc.status != 404:
                        raise
                    await self._load_pause_image()
            self._pause_loaded = True

        return self._use_sandboxes

    async def _load_pause_image(self) -> None:
        """Builds :data:`pause.PAUSE_IMAGE` on the engine, from nothing."""
        version = await self._docker.version()
        architecture = str(version.get("Arch", ""))
        try:
            archive = pause.image_archive(architecture)
        except ValueError:
            logger.warning(
                "no network sandboxes: no pause program for this engine; each "
                "instance gets a network of its own, and restarts are slower",
                extra={"architecture": architecture},
            )
            self._use_sandboxes = False
            return
        try:
            await self._docker.images.import_image(archive)
        except aiodocker.DockerError as exc:
            if exc.status == _UNREACHABLE:
                raise
            logger.warning(
                "no network sandboxes: the engine refused the pause image; each "
                "instance gets a network of its own, and restarts are slower",
                extra={"error": exc.message},
            )
            self._use_sandboxes = False
            return
        logger.info(
            "pause image loaded",
            extra={"image": pause.PAUSE_IMAGE, "architecture": architecture},
        )

    async def _running(self, container_id: str) -> bool:
        """True while the container exists and runs."""
        info = await self._inspect(container_id)
        return info is not None and bool(info.get("State", {}).get("Running"))

    async def _drop_sandbox(self, name: str, sandbox: _Sandbox) -> None:
        if self._sandboxes.get(name) == sandbox:
            del self._sandboxes[name]
        await self._remove_quietly(sandbox.container_id)

    async def _take_sandbox(
        self, container_id: str, labels: Mapping[str, str], state: str
    ) -> None:
        """Takes over a sandbox found on the engine (after an operator restart)."""
        name = labels.get(LABEL_NAME, "")
        known = self._sandboxes.get(name)
        if known is not None and known.container_id == container_id:
            return
        if state != "running" or known is not None or container_id in self._unremoved:
            await self._remove_quietly(container_id)
            return
        self._sandboxes[name] = _Sandbox(
            container_id, labels.get(LABEL_SANDBOX_CONFIG, "")
        )
        self._arm_idle(name)

    async def _adopt_sandbox(self, watch: _Watch, sandbox_id: str) -> None:
        """Notes the sandbox an adopted instance joined; kills the instance
        when that sandbox is gone (it has no network left)."""
        watch.sandbox_id = sandbox_id
        known = self._sandboxes.get(watch.name)
        if known is not None and known.container_id == sandbox_id:
            return
        info = await self._inspect(sandbox_id)
        state = info.get("State", {}) if info else {}
        if info is not None and state.get("Running"):
            labels = info.get("Config", {}).get("Labels") or {}
            self._sandboxes[watch.name] = _Sandbox(
                sandbox_id, labels.get(LABEL_SANDBOX_CONFIG, "")
            )
            return
        self._lose_sandbox(watch)

    def _on_sandbox_died(self, name: str, container_id: str) -> None:
        """A sandbox ended: the instances in it lost their network."""
        sandbox = self._sandboxes.get(name)
        current = sandbox is not None and sandbox.container_id == container_id
        lost = [
            watch
            for watch in self._watches.values()
            if watch.sandbox_id == container_id and not watch.claimed
        ]
        if not current and not lost:
            return  # One this runtime removed or replaced: expected.
        if current:
            del self._sandboxes[name]
        logger.warning(
            "network sandbox ended",
            extra={"workload": name, "container_id": container_id[:12]},
        )
        for watch in lost:
            self._lose_sandbox(watch)
        self._background(
            self._remove_quietly(container_id),
            name=f"corral-docker-remove-{container_id[:12]}",
        )

    def _lose_sandbox(self, watch: _Watch) -> None:
        """Kills an instance whose sandbox is gone; its exit says why."""
        watch.lost_sandbox = True
        self._background(
            self._kill_quietly(watch),
            name=f"corral-docker-kill-{watch.instance_id[:12]}",
        )

    async def _kill_quietly(self, watch: _Watch) -> None:
        try:
            await self._kill(watch, SIGKILL)
        except RuntimeUnavailableError as exc:
            # The reconnect's recheck kills it again when the engine is back.
            logger.warning(
                "cannot kill container",
                extra={"instance_id": watch.instance_id, "error": str(exc)},
            )

    async def _recheck_sandboxes(self) -> None:
        """Handles the sandboxes that ended while we were blind.

        Raises:
            RuntimeUnavailableError: the engine went away again.
        """
        in_use = {s.container_id: name for name, s in self._sandboxes.items()}
        for watch in list(self._watches.values()):
            if watch.claimed:
                continue
            if watch.lost_sandbox:
                self._lose_sandbox(watch)  # Its kill did not get through.
            elif watch.sandbox_id:
                in_use.setdefault(watch.sandbox_id, watch.name)
        for container_id, name in in_use.items():
            if not await self._running(container_id):
                self._on_sandbox_died(name, container_id)

    def _has_instance(self, name: str) -> bool:
        """True while an instance of ``name`` runs (or is being started)."""
        return any(
            watch.name == name and not watch.claimed for watch in self._watches.values()
        )

    def _name_lock(self, name: str) -> asyncio.Lock:
        """Orders the sandbox work of one name: starts and releases."""
        return self._name_locks.setdefault(name, asyncio.Lock())

    def _arm_idle(self, name: str) -> None:
        """Schedules the release of an unused sandbox."""
        if (
            self._closed
            or name in self._idle_timers
            or name not in self._sandboxes
            or self._has_instance(name)
        ):
            return
        self._idle_timers[name] = self._loop.call_later(
            _SANDBOX_IDLE, self._idle_expired, name
        )

    def _cancel_idle(self, name: str) -> None:
        timer = self._idle_timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _idle_expired(self, name: str) -> None:
        self._idle_timers.pop(name, None)
        if not self._closed:
            self._background(self.release(name), name=f"corral-docker-release-{name}")

    def _background(self, coro: Coroutine[Any, Any, object], *, name: str) -> None:
        """Runs ``coro`` in a task that :meth:`close` cancels."""
        task = spawn(coro, name=name)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _register(self, watch: _Watch) -> None:
        self._watches[watch.instance_id] = watch
        self._by_container[watch.container_id] = watch

    def _forget(self, watch: _Watch) -> None:
        if self._watches.get(watch.instance_id) is watch:
            del self._watches[watch.instance_id]
        if self._by_container.get(watch.container_id) is watch:
            del self._by_container[watch.container_id]
        self._oom_seen.discard(watch.container_id)
        self._arm_idle(watch.name)

    def _claim(self, watch: _Watch) -> bool:
        """Makes the caller the one observer that settles ``watch``."""
        if watch.claimed:
            return False
        watch.claimed = True

        return True

    def _abandon(self, watch: _Watch) -> None:
        """Undoes a start that failed: the caller reports it, not ``on_exit``.

        Resolves ``launched`` even when another observer already claimed
        the end, whose settling waits on it.
        """
        if not watch.launched.done():
            watch.launched.set_result(False)
        if self._claim(watch):
            self._begin_settle(watch, claimed=True)

    def _begin_settle(
        self,
        watch: _Watch,
        *,
        death: _Death | None = None,
        state: Mapping[str, Any] | None = None,
        claimed: bool = False,
    ) -> None:
        """Claims ``watch`` (unless the caller did) and settles it in a task.

        Args:
            watch: the instance that ended.
            death: what its ``die`` event said, if that is how we learnt it.
            state: its inspect ``State``, if the caller already has it.
            claimed: the caller has claimed ``watch`` already.
        """
        if not claimed and not self._claim(watch):
            return
        task = spawn(
            self._settle(watch, death, state),
            name=f"corral-docker-exit-{watch.instance_id[:12]}",
        )
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(
        self,
        watch: _Watch,
        death: _Death | None,
        state: Mapping[str, Any] | None,
    ) -> None:
        """Reports the end of a claimed instance once, then removes it."""
        extra = {
            "workload": watch.name,
            "instance_id": watch.instance_id,
            "container_id": watch.container_id[:12],
        }
        oom = watch.container_id in self._oom_seen
        if state is not None:
            exit_info = _exit_from_state(state, watch.instance_id)
        elif death is not None and death.conclusive(oom):
            exit_info = death.exit_info(watch.instance_id, oom)
        else:
            exit_info = await self._describe_exit(watch, death)

        if watch.lost_sandbox:
            exit_info = dataclasses.replace(
                exit_info,
                message="killed by corral: its network sandbox container ended, "
                "taking the network with it",
            )

        # A failed start is reported by start() itself, as its exception.
        if await watch.launched:
            logger.info("workload exited", extra={**extra, **_exit_fields(exit_info)})
            try:
                self._on_exit(watch.name, watch.instance_id, exit_info)
            except Exception:
                logger.exception("exit callback failed", extra=extra)

        # Removed after on_exit: the replacement need not wait for it.
        await self._remove_quietly(watch.container_id)
        self._forget(watch)
        if not watch.exited.done():
            watch.exited.set_result(None)

    async def _describe_exit(self, watch: _Watch, death: _Death | None) -> ExitInfo:
        """Inspects a dead container; falls back to the die event's data."""
        extra = {"instance_id": watch.instance_id}
        try:
            info = await self._inspect(watch.container_id)
        except RuntimeUnavailableError as exc:
            logger.warning(
                "cannot inspect exited container", extra={**extra, "error": str(exc)}
            )
            info = None
        if info is not None:
            state = dict(info.get("State", {}))
            # The engine's verdict can lag the kernel's: an oom event that
            # arrives a little after the exit settles it too.
            late_oom_possible = (
                watch.memory_limited
                and not watch.killed
                and not state.get("OOMKilled")
                and _parse_int(state.get("ExitCode")) == 128 + SIGKILL
            )
            if late_oom_possible:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watch.oom.wait(), _OOM_EVENT_WAIT)
            if watch.container_id in self._oom_seen:
                state["OOMKilled"] = True
            return _exit_from_state(state, watch.instance_id)

        oom = watch.container_id in self._oom_seen
        if death is not None and (death.exit_code is not None or oom):
            return death.exit_info(watch.instance_id, oom)

        return ExitInfo(
            reason=ExitReason.UNKNOWN,
            time=datetime.now(UTC),
            instance_id=watch.instance_id,
            message=_VANISHED_MESSAGE,
        )

    async def _settle_when_stopped(self, watch: _Watch) -> bool:
        """Waits for the engine to report the container stopped, then settles it.

        Used when no ``die`` event arrived in time after SIGKILL.

        Returns:
            False when the container still runs after ``_KILL_TIMEOUT``.
        """
        container = self._docker.containers.container(watch.container_id)
        try:
            async with asyncio.timeout(_KILL_TIMEOUT), self._engine(timeout=None):
                try:
                    await container.wait(condition="not-running")
                except aiodocker.DockerError as exc:
                    if exc.status != 404:  # 404: removed, certainly stopped.
                        raise
        except TimeoutError:
            return False
        self._begin_settle(watch)

        return True

    async def _follow_events_forever(self, since: float) -> None:
        """Follows the event stream, reconnecting with backoff, forever."""
        delay = _RECONNECT_INITIAL
        try:
            while True:
                # Is the engine there? Then catch up on what we could not see.
                try:
                    async with self._engine():
                        await self._docker.version()
                    await self._recheck_watches()
                    await self._recheck_sandboxes()
                    for container_id in list(self._unremoved):
                        await self._remove_quietly(container_id)
                except RuntimeUnavailableError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RECONNECT_MAX)
                    continue

                # Follow the stream until it ends; replay from shortly before.
                opened = time.monotonic()
                await self._follow_events(since)
                since = time.time()
                if time.monotonic() - opened >= _STABLE_STREAM:
                    delay = _RECONNECT_INITIAL
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX)
        except asyncio.CancelledError:
            logger.debug("docker event stream stopped", extra={"url": self._url})
            raise

    async def _follow_events(self, since: float) -> None:
        """Consumes one connection of the event stream until it ends."""
        # A fresh DockerEvents per connection: aiodocker's own runs only once.
        # Its reader publishes every event, then None when the stream ends.
        events = DockerEvents(self._docker)  # type: ignore[no-untyped-call]  # untyped in aiodocker
        subscriber = events.subscribe(create_task=False)  # type: ignore[no-untyped-call]  # untyped in aiodocker
        reader = self._loop.create_task(
            events.run(since=str(int(since) - _REPLAY_MARGIN), filters=_EVENT_FILTER),
            name="corral-docker-events-reader",
        )
        try:
            while True:
                event = await subscriber.get()
                if event is None:  # aiodocker's end-of-stream marker
                    break
                self._on_event(event)
        finally:
            reader.cancel()
            await asyncio.wait({reader})

        error = None if reader.cancelled() else reader.exception()
        if error is not None and not (
            isinstance(error, aiodocker.DockerError) and error.status != _UNREACHABLE
        ):
            self._set_available(False)
        logger.info(
            "docker event stream ended",
            extra={"url": self._url, "error": repr(error) if error else ""},
        )

    def _on_event(self, event: Mapping[str, Any]) -> None:
        """Routes one ``die`` or ``oom`` event to its watch."""
        action = event.get("Action") or event.get("status") or ""
        actor = event.get("Actor") or {}
        container_id = actor.get("ID") or event.get("id") or ""
        watch = self._by_container.get(container_id)

        if action == "oom":
            if watch is not None:
                self._oom_seen.add(container_id)
                watch.oom.set()
            return
        if action != "die":
            return
        attributes = actor.get("Attributes") or {}
        if attributes.get(LABEL_ROLE) == ROLE_SANDBOX:
            self._on_sandbox_died(str(attributes.get(LABEL_NAME, "")), container_id)
            return
        death = _Death(
            exit_code=_parse_int(attributes.get("exitCode")),
            time=_event_time(event),
        )
        if watch is None:
            self._recent_dies[container_id] = death
            while len(self._recent_dies) > _RECENT_DIES:
                self._recent_dies.popitem(last=False)
            return
        self._begin_settle(watch, death=death)

    async def _recheck_watches(self) -> None:
        """Settles every watched container that stopped while we were blind.

        Raises:
            RuntimeUnavailableError: the engine went away again.
        """
        for watch in list(self._watches.values()):
            if watch.claimed:
                continue
            info = await self._inspect(watch.container_id)
            if info is None:
                self._begin_settle(
                    watch, state={"ExitCode": None, "Error": _VANISHED_MESSAGE}
                )
                continue
            state = info.get("State", {})
            if not state.get("Running", False) and watch.launched.done():
                self._begin_settle(watch, state=state)


def _container_config(request: LaunchRequest, sandbox_id: str | None) -> dict[str, Any]:
    """The Engine API ``containers/create`` body for one instance.

    With ``sandbox_id`` the instance joins that sandbox's network, which
    publishes the ports; without it, the instance publishes them itself.
    """
    spec = request.spec
    labels = {
        **_user_labels(spec),
        LABEL_MANAGED: "true",
        LABEL_NAME: request.name,
        LABEL_INSTANCE: request.instance_id,
    }
    env = [
        f"{key}={value}"
        for key, value in request.env.items()
        if key not in _HOST_VARIABLES or key in spec.env
    ]
    host_config: dict[str, Any] = {"RestartPolicy": {"Name": "no"}}
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": env,
        "Labels": labels,
        "StopSignal": spec.stop_signal,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "HostConfig": host_config,
    }
    if spec.command:
        config["Cmd"] = list(spec.command)
    if spec.working_dir:
        config["WorkingDir"] = spec.working_dir

    # Compute resources and ports. Validation already refused bad values;
    # a spec built by hand still gets a start error naming the field.
    if spec.memory:
        try:
            host_config["Memory"] = parse_memory(spec.memory)
        except ValueError as exc:
            raise WorkloadStartError(f"spec.memory {exc}") from exc
    if not (math.isfinite(spec.cpus) and spec.cpus >= 0):
        raise WorkloadStartError(f"spec.cpus is {spec.cpus:g}; it must be at least 0")
    if spec.cpus:
        host_config["NanoCpus"] = round(spec.cpus * 1e9)
    if sandbox_id is not None:
        host_config["NetworkMode"] = f"container:{sandbox_id}"
        return config
    exposed, bindings = _port_config(spec.ports)
    if exposed:
        config["ExposedPorts"] = exposed
        host_config["PortBindings"] = bindings

    return config


def _sandbox_config(request: LaunchRequest, digest: str) -> dict[str, Any]:
    """The ``containers/create`` body of a name's network sandbox."""
    spec = request.spec
    labels = {
        **_user_labels(spec),
        LABEL_MANAGED: "true",
        LABEL_NAME: request.name,
        LABEL_ROLE: ROLE_SANDBOX,
        LABEL_SANDBOX_CONFIG: digest,
    }
    host_config: dict[str, Any] = {"RestartPolicy": {"Name": "no"}}
    config: dict[str, Any] = {
        "Image": pause.PAUSE_IMAGE,
        "Labels": labels,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "HostConfig": host_config,
    }
    exposed, bindings = _port_config(spec.ports)
    if exposed:
        config["ExposedPorts"] = exposed
        host_config["PortBindings"] = bindings

    return config


def _sandbox_digest(spec: ContainerSpec) -> str:
    """What a sandbox is made from: a new value means a new sandbox."""
    made_from = {"ports": list(spec.ports), "labels": _user_labels(spec)}
    encoded = json.dumps(made_from, sort_keys=True).encode()

    return hashlib.sha256(encoded).hexdigest()[:16]


def _port_config(
    ports: Iterable[str],
) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """``ExposedPorts`` and ``PortBindings`` for Docker-style port entries.

    Every entry is published, as with ``docker run -p``; an empty
    ``HostPort`` lets the engine pick a free one.
    """
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for i, entry in enumerate(ports):
        try:
            port = parse_port(entry)
        except ValueError as exc:
            raise WorkloadStartError(f"spec.ports[{i}] {exc}") from exc
        key = f"{port.container_port}/{port.protocol}"
        exposed[key] = {}
        host_port = "" if port.host_port is None else str(port.host_port)
        binding = {"HostIp": port.host_ip, "HostPort": host_port}
        bindings.setdefault(key, []).append(binding)

    return exposed, bindings


def _create_error(image: str, exc: aiodocker.DockerError) -> WorkloadStartError:
    """Explains why the engine refused to create the container."""
    if exc.status == 404 and "image" in exc.message.lower():
        return WorkloadStartError(
            f"image {image!r} is missing locally: {exc.message}; run "
            f"'docker pull {image}' or 'docker load' it on this host "
            "(corral never pulls images)"
        )
    if exc.status == 409:
        return WorkloadStartError(
            f"a container for this instance already exists: {exc.message}"
        )

    return WorkloadStartError(
        f"the Docker engine refused the container for image {image!r}: "
        f"{exc.message}; check the spec"
    )


def _exit_from_state(state: Mapping[str, Any], instance_id: str) -> ExitInfo:
    """Classifies a container's end from its inspect ``State``."""
    time_ = _parse_time(state.get("FinishedAt")) or datetime.now(UTC)
    code = _parse_int(state.get("ExitCode"))
    error = str(state.get("Error") or "")
    if state.get("OOMKilled"):
        return ExitInfo(
            reason=ExitReason.OOM_KILLED,
            time=time_,
            instance_id=instance_id,
            signal=SIGKILL,
            message="killed by the kernel's OOM killer: the memory limit was reached",
        )
    if code is None:
        return ExitInfo(
            reason=ExitReason.UNKNOWN,
            time=time_,
            instance_id=instance_id,
            message=error or "the engine reported no exit code",
        )
    if code > 128 and code - 128 in valid_signals():
        return ExitInfo(
            reason=ExitReason.SIGNALED,
            time=time_,
            instance_id=instance_id,
            signal=code - 128,
            message=f"exit status {code}",
        )

    return ExitInfo(
        reason=ExitReason.EXITED,
        time=time_,
        instance_id=instance_id,
        exit_code=code,
        message=error,
    )


def _exit_fields(exit_info: ExitInfo) -> dict[str, Any]:
    return {
        "reason": exit_info.reason.value,
        "exit_code": exit_info.exit_code,
        "signal": exit_info.signal,
    }


async def _wait_removed(container: DockerContainer) -> None:
    """Waits until the engine has removed ``container`` (gone already: fine).

    Raises:
        aiodocker.DockerError: the engine refused to wait.
    """
    try:
        await container.wait(condition="removed")
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            raise


async def _wait_exited(watch: _Watch, limit: float) -> bool:
    """Waits up to ``limit`` seconds for the instance to be settled."""
    try:
        await asyncio.wait_for(asyncio.shield(watch.exited), max(limit, 0.0))
    except TimeoutError:
        return False

    return True


def _container_name(name: str, instance_id: str) -> str:
    return f"corral-{name}-{instance_id[:12]}"


def _user_labels(spec: ContainerSpec) -> dict[str, str]:
    """The spec's labels, minus any key corral sets itself (validation
    refuses those; a spec stored before it did may still carry one)."""
    return {k: v for k, v in spec.labels.items() if k not in RESERVED_LABELS}


def _sandbox_name(name: str) -> str:
    return f"corral-{name}-sandbox"


def _identity(container_id: str, instance_id: str) -> str:
    identity = {"id": container_id, "instance_id": instance_id}
    return json.dumps(identity, separators=(",", ":"))


def _label_filter(*labels: str) -> str:
    """A ``filters`` query value selecting corral's containers."""
    return json.dumps({"label": [f"{LABEL_MANAGED}=true", *labels]})


def _parse_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    return None


def _event_time(event: Mapping[str, Any]) -> datetime:
    """When the engine emitted ``event``."""
    nanos = _parse_int(event.get("timeNano"))
    if nanos is None:
        return datetime.now(UTC)

    return datetime.fromtimestamp(nanos / 1e9, UTC)


def _parse_time(value: object) -> datetime | None:
    """Reads the engine's RFC 3339 times; None for the zero time or garbage."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None

    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
