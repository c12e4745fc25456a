"""Restart latency under Docker: corral's docker runtime beside Docker's own
``--restart=always``, in the same run, with the same image and command.

The workload is a busybox shell that exits 1 after 200 ms. Busybox has no
monotonic clock to stamp with, so latency is read from the engine's event
stream instead: the ``die`` event of one container to the ``start`` event of
its replacement (``timeNano``, one clock for both sides).

- corral: one member, ``restart_policy.when = "always"``, zero restart delay
  and a breaker that never trips; every ``die`` of its container is followed
  by a new container's ``start``.
- Docker: a container created through the Engine API (aiodocker) with
  ``RestartPolicy: always``; its ``die`` is followed by its own ``start``.
  Docker doubles its delay (100 ms, 200 ms, ...) for a container that keeps
  failing within 10 s, so every sample is the *first* restart of a fresh
  container: Docker at its minimum delay.

``python -m bench.docker_restart [SAMPLES]`` prints p50/p90/p99/max of both
and their ratio; ``make bench`` includes the rows through :func:`measure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import aiodocker
from aiodocker.events import DockerEvents

from bench.common import corral, percentile

IMAGE = "corral-test-busybox:latest"
"""Built by ``.ci/docker.sh`` (no registry involved)."""
COMMAND = ["sh", "-c", "sleep 0.2; exit 1"]
BENCH_LABEL = "corral.bench"
CORRAL_ROW = "corral (docker runtime)"
DOCKER_ROW = "docker --restart=always"
GOAL_P50_MS = 310.0


@dataclasses.dataclass(frozen=True)
class ContainerEvent:
    action: str
    """``die`` or ``start``."""
    container_id: str
    nanos: int
    """The engine's ``timeNano``."""


class EventLog:
    """Follows the engine's ``die`` and ``start`` events of one bench run."""

    def __init__(self, docker: aiodocker.Docker, label: str) -> None:
        self.events: list[ContainerEvent] = []
        self._changed = asyncio.Event()
        self._docker = docker
        self._filters = json.dumps(
            {"type": ["container"], "event": ["die", "start"], "label": [label]}
        )
        self._tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[EventLog]:
        events = DockerEvents(self._docker)  # type: ignore[no-untyped-call]  # untyped in aiodocker
        subscriber = events.subscribe(create_task=False)  # type: ignore[no-untyped-call]  # untyped in aiodocker
        since = str(int(time.time()) - 1)
        reader = asyncio.create_task(events.run(since=since, filters=self._filters))
        pump = asyncio.create_task(self._pump(subscriber))
        try:
            yield self
        finally:
            for task in (reader, pump):
                task.cancel()
            await asyncio.wait({reader, pump})

    async def _pump(self, subscriber: asyncio.Queue[dict[str, object] | None]) -> None:
        while (event := await subscriber.get()) is not None:
            actor = event.get("Actor")
            container_id = actor.get("ID", "") if isinstance(actor, dict) else ""
            nanos = event.get("timeNano")
            action = event.get("Action") or event.get("status")
            if isinstance(nanos, int) and isinstance(action, str):
                self.events.append(ContainerEvent(action, str(container_id), nanos))
                self._changed.set()

    async def wait_until(self, done: object, timeout: float) -> None:
        """Waits until ``done()`` (a callable) is true, re-checking per event."""
        assert callable(done)
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()


def replacement_gaps(events: Sequence[ContainerEvent], *, same: bool) -> list[float]:
    """Milliseconds from each ``die`` to the next ``start``.

    Args:
        events: in stream order.
        same: the replacement is the same container (Docker's restart
            policy) rather than a new one (corral).
    """
    gaps = []
    pending: ContainerEvent | None = None
    for event in events:
        if event.action == "die":
            pending = event
        elif (
            event.action == "start"
            and pending is not None
            and (event.container_id == pending.container_id) == same
        ):
            gaps.append((event.nanos - pending.nanos) / 1e6)
            pending = None
    return gaps


async def corral_gaps(docker: aiodocker.Docker, samples: int) -> list[float]:
    """Restart latencies (ms) of corral's docker runtime, zero restart delay."""
    label = f"{BENCH_LABEL}={uuid.uuid4().hex}"
    key, value = label.split("=")
    fleet = f"""
[operator]
runtime = "docker"
reconcile_interval = "0s"

[[containers]]
name = "crasher"
image = "{IMAGE}"
command = {json.dumps(COMMAND)}
labels = {{ "{key}" = "{value}" }}
restart_policy.when = "always"
restart_policy.crash = {{ window = "1s", allowed_crashes = 100 }}
restart_policy.backoff = {{ initial = "0s", max = "1s" }}
"""
    log = EventLog(docker, label)
    try:
        async with log.following():
            with corral(fleet) as server:
                await asyncio.to_thread(server.start)
                await log.wait_until(
                    lambda: len(replacement_gaps(log.events, same=False)) >= samples,
                    timeout=60 + samples,
                )
    finally:
        await _remove(docker, label)
    return replacement_gaps(log.events, same=False)[:samples]


async def docker_gaps(docker: aiodocker.Docker, samples: int) -> list[float]:
    """Restart latencies (ms) of Docker's ``always`` policy at its minimum delay."""
    label = f"{BENCH_LABEL}={uuid.uuid4().hex}"
    key, value = label.split("=")
    log = EventLog(docker, label)
    gaps: list[float] = []
    try:
        async with log.following():
            for _ in range(samples):
                container = await docker.containers.create(
                    {
                        "Image": IMAGE,
                        "Cmd": COMMAND,
                        "Labels": {key: value},
                        "HostConfig": {"RestartPolicy": {"Name": "always"}},
                    }
                )
                await container.start()

                def restarted(container_id: str = container.id) -> bool:
                    ours = [e for e in log.events if e.container_id == container_id]
                    return bool(replacement_gaps(ours, same=True))

                await log.wait_until(restarted, timeout=30)
                mine = [e for e in log.events if e.container_id == container.id]
                gaps.append(replacement_gaps(mine, same=True)[0])
                await container.delete(force=True)
    finally:
        await _remove(docker, label)
    return gaps


async def _remove(docker: aiodocker.Docker, label: str) -> None:
    """Force-removes every container of one bench run."""
    listed = await docker.containers.list(
        all=True, filters=json.dumps({"label": [label]})
    )
    for container in listed:
        with contextlib.suppress(aiodocker.DockerError):  # Already gone: fine.
            await container.delete(force=True)


async def _measure(samples: int) -> dict[str, list[float]]:
    async with aiodocker.Docker() as docker:
        return {
            CORRAL_ROW: await corral_gaps(docker, samples),
            DOCKER_ROW: await docker_gaps(docker, samples),
        }


def measure(samples: int) -> dict[str, list[float]]:
    """Both sides' restart latencies in milliseconds, measured in one run."""
    return asyncio.run(_measure(samples))


def docker_available() -> bool:
    """True when the engine answers and the bench image is present."""

    async def check() -> bool:
        try:
            async with aiodocker.Docker() as docker:
                await docker.images.inspect(IMAGE)
        except (aiodocker.DockerError, OSError, ValueError):
            return False
        return True

    return asyncio.run(check())


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    if not docker_available():
        sys.exit(f"no Docker engine or no {IMAGE}; run .ci/docker.sh (as root)")
    results = measure(samples)

    print("restart latency under Docker: die event to replacement's start event (ms)")
    print(f"  {'':<26} {'n':>4} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for row, gaps in results.items():
        print(
            f"  {row:<26} {len(gaps):>4} {statistics.median(gaps):>8.1f} "
            f"{percentile(gaps, 0.9):>8.1f} {percentile(gaps, 0.99):>8.1f} "
            f"{max(gaps):>8.1f}"
        )
    ours = statistics.median(results[CORRAL_ROW])
    theirs = statistics.median(results[DOCKER_ROW])
    verdict = "meets" if ours <= GOAL_P50_MS else "misses"
    print(
        f"p50 ratio docker/corral: {theirs / ours:.2f}x; corral p50 {ours:.1f} ms "
        f"{verdict} the {GOAL_P50_MS:.0f} ms goal"
    )


if __name__ == "__main__":
    main()
