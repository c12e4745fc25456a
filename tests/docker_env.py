"""Helpers for the tests that need a real Docker engine.

The engine and the test image come from ``.ci/docker.sh``; nothing here pulls
an image. :class:`FakeEngineOutage` is the one fake: a Unix-socket proxy in
front of the real engine that can drop every connection and refuse new ones,
which is how an engine outage is produced without stopping the engine that
other tests (and people) share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiodocker
import aiohttp
import pytest

IMAGE = "corral-test-busybox:latest"
"""Built by ``.ci/docker.sh`` with ``docker import``: static busybox plus
``memhog``, a shell that buffers 256 MiB to trip a memory limit."""

ENGINE_SOCKET = "/var/run/docker.sock"
TIMEOUT = 15.0
"""Seconds a test waits for something the engine does in well under one."""


async def docker_problem(url: str | None = None) -> str | None:
    """Why the engine or the test image cannot be used; None when both can."""
    try:
        async with aiodocker.Docker(url=url or _default_url()) as docker:
            await docker.version()
            await docker.images.inspect(IMAGE)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return f"the test image {IMAGE} is missing"
        return f"the Docker engine is not reachable: {exc.message}"
    except (OSError, ValueError, AssertionError) as exc:
        return f"the Docker engine is not reachable: {exc!r}"

    return None


def skip_or_fail(problem: str) -> None:
    """Fails under CI (env ``CI`` set), else skips, with the fix to run."""
    message = f"{problem}; run .ci/docker.sh (as root) to start it and build {IMAGE}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def remove_containers(docker: aiodocker.Docker, label: str) -> list[str]:
    """Force-removes every container carrying ``label`` (``key=value``).

    Returns:
        The ids removed.
    """
    filters = json.dumps({"label": [label]})
    listed = await docker.containers.list(all=True, filters=filters)
    for container in listed:
        with contextlib.suppress(aiodocker.DockerError):  # Already gone: fine.
            await container.delete(force=True)

    # A removal another client started may still be under way: wait it out,
    # so that the next test does not meet these containers' names.
    async def all_gone() -> bool:
        return await docker.containers.list(all=True, filters=filters) == []

    await eventually(all_gone, f"the containers labelled {label} are removed")

    return [container.id for container in listed]


async def serves(host_port: str, text: str = "served") -> bool:
    """True when ``GET /index`` on the host port answers ``text``."""
    url = f"http://127.0.0.1:{host_port}/index"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as reply:
            return reply.status == 200 and (await reply.text()).strip() == text
    except aiohttp.ClientError:
        return False


async def container_exists(docker: aiodocker.Docker, container_id: str) -> bool:
    try:
        await docker.containers.container(container_id).show()
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return False
        raise

    return True


async def eventually(
    check: Callable[[], object], what: str, timeout: float = TIMEOUT
) -> None:
    """Polls ``check`` (sync or async) until it is truthy, else fails."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


class FakeEngineOutage:
    """A fake: a Unix-socket proxy to the real engine that can go down.

    Point a runtime at :attr:`url`. :meth:`go_down` closes every proxied
    connection (the event stream included) and refuses new ones until
    :meth:`come_back`; the engine behind keeps running. :meth:`stall` makes
    the engine seem hung instead: connections stay open and what was already
    on its way back (the event stream) still flows, but requests are held,
    unanswered, until :meth:`resume` delivers them.
    """

    def __init__(self, path: Path, upstream: str = ENGINE_SOCKET) -> None:
        self.path = path
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    async def come_back(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def go_down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for pump in list(self._pumps):
            pump.cancel()
        if self._pumps:
            await asyncio.wait(self._pumps)
        self.path.unlink(missing_ok=True)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            engine_reader, engine_writer = await asyncio.open_unix_connection(
                self._upstream
            )
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, engine_writer))
        pumps = [
            asyncio.create_task(_pump(client_reader, engine_writer, self._flowing)),
            asyncio.create_task(_pump(engine_reader, client_writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.wait(pumps)
            self._pumps.difference_update(pumps)
            for writer in (client_writer, engine_writer):
                writer.close()
                self._writers.discard(writer)


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    gate: asyncio.Event | None = None,
) -> None:
    with contextlib.suppress(OSError):  # Either side hung up: the pump ends.
        while chunk := await reader.read(65536):
            if gate is not None:
                await gate.wait()
            writer.write(chunk)
            await writer.drain()


def _default_url() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{ENGINE_SOCKET}"
