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
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from signal import SIGKILL, valid_signals
from types import TracebackType
from typing import Any, Self

import aiodocker
import aiohttp
from aiodocker.events import DockerEvents

from corral.core.model import ExitInfo, ExitReason
from corral.core.specs import parse_memory, parse_port
from corral.core.tasks import spawn
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
    claimed: bool = False
    """Set by the first observer of the end; only it settles the instance."""


class DockerRuntime:
    """Runs each workload as a Docker container and reports its exits.

    Create it inside the running event loop and call every method from the
    loop's thread. It can be used as an async context manager that closes it.

    Args:
        on_exit: Called on the loop exactly once for every instance that ended.
        url: The engine's address. Without it, ``DOCKER_HOST``, then
            ``unix:///var/run/docker.sock``.
    """

    name: str = "docker"

    def __init__(self, *, on_exit: ExitCallback, url: str | None = None) -> None:
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

    # TODO: a replacement started right after a death waits on the engine
    # tearing down the dead container's network (starts take 300-480 ms then,
    # ~250 ms on an idle engine, ~260 ms with no network at all), which keeps
    # corral's restart p50 near 380 ms against a 310 ms goal. A long-lived
    # sandbox container per name holding the network namespace and ports, with
    # each instance joining it, would take that off the restart path; it needs
    # a pause process that any image can run, which is the open question.
    async def start(self, request: LaunchRequest) -> RuntimeHandle:
        """Creates and starts one container and begins watching it.

        ``spec.command`` overrides the image's command; ``request.env`` is the
        environment, minus the operator's host variables (``PATH``, ``HOME``
        and the like) unless the spec's ``env`` names them.

        Raises:
            WorkloadStartError: the image is missing locally, or the engine
                refused the spec (bad command, working directory, limits).
            RuntimeUnavailableError: the runtime is closed or the engine
                cannot be reached.
        """
        self._check_open()
        if request.instance_id in self._watches:
            raise ValueError(f"instance {request.instance_id!r} is already running")
        spec = request.spec
        if not spec.image:
            raise WorkloadStartError(
                "spec.image is empty; the docker runtime needs an image to run"
            )
        config = _container_config(request)
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
        )
        self._register(watch)
        launched = False
        try:
            async with self._engine():
                try:
                    await container.start()
                except aiodocker.DockerError as exc:
                    if exc.status == _UNREACHABLE:
                        raise
                    raise WorkloadStartError(
                        f"container for {request.name!r} cannot start: "
                        f"{exc.message}; check spec.command and spec.working_dir"
                    ) from exc
            launched = True
        finally:
            if not launched:
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
        )
        watch.launched.set_result(True)
        self._register(watch)
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

    async def close(self) -> None:
        """Stops watching and closes the client. The containers keep running."""
        if self._closed:
            return
        self._closed = True

        # The stream first, so nothing starts settling behind our back.
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

    async def _kill(self, watch: _Watch, signal: int) -> None:
        """Signals the container; one that already stopped is not an error."""
        async with self._engine():
            try:
                await self._docker.containers.container(watch.container_id).kill(
                    signal=str(signal)
                )
            except aiodocker.DockerError as exc:
                # 404: removed; 409: not running. Either way its end is coming.
                if exc.status not in (404, 409):
                    raise

    async def _remove_quietly(self, container_id: str) -> None:
        """Removes a stopped container; failures only cost a leftover."""
        extra = {"container_id": container_id[:12]}
        try:
            async with self._engine():
                try:
                    await self._docker.containers.container(container_id).delete(
                        force=True
                    )
                except aiodocker.DockerError as exc:
                    if exc.status != 404:
                        raise
        except RuntimeUnavailableError as exc:
            # Retried when the engine is back (if we are still running then).
            self._unremoved.add(container_id)
            logger.warning(
                "cannot remove container", extra={**extra, "error": str(exc)}
            )
        else:
            self._unremoved.discard(container_id)

    def _register(self, watch: _Watch) -> None:
        self._watches[watch.instance_id] = watch
        self._by_container[watch.container_id] = watch

    def _forget(self, watch: _Watch) -> None:
        if self._watches.get(watch.instance_id) is watch:
            del self._watches[watch.instance_id]
        if self._by_container.get(watch.container_id) is watch:
            del self._by_container[watch.container_id]
        self._oom_seen.discard(watch.container_id)

    def _claim(self, watch: _Watch) -> bool:
        """Makes the caller the one observer that settles ``watch``."""
        if watch.claimed:
            return False
        watch.claimed = True

        return True

    def _abandon(self, watch: _Watch) -> None:
        """Undoes a start that failed: the caller reports it, not ``on_exit``."""
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
            # The engine's verdict can lag the kernel's: an oom event seen by
            # now settles it too.
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
            return
        if action != "die":
            return
        attributes = actor.get("Attributes") or {}
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


def _container_config(request: LaunchRequest) -> dict[str, Any]:
    """The Engine API ``containers/create`` body for one instance."""
    spec = request.spec
    labels = {
        **spec.labels,
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
    exposed, bindings = _port_config(spec.ports)
    if exposed:
        config["ExposedPorts"] = exposed
        host_config["PortBindings"] = bindings

    return config


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


async def _wait_exited(watch: _Watch, limit: float) -> bool:
    """Waits up to ``limit`` seconds for the instance to be settled."""
    try:
        await asyncio.wait_for(asyncio.shield(watch.exited), max(limit, 0.0))
    except TimeoutError:
        return False

    return True


def _container_name(name: str, instance_id: str) -> str:
    return f"corral-{name}-{instance_id[:12]}"


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
