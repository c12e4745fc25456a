"""The docker runtime against a real Docker engine and real containers.

Needs the engine and the ``corral-test-busybox`` image from ``.ci/docker.sh``;
without them the tests skip (and fail when ``CI`` is set). Every container a
test creates carries a ``corral.test=<uuid>`` label of its own, and the
``harness`` fixture closes the runtimes and force-removes everything with that
label in teardown, whatever the test's outcome. Waiting is done on futures or
by polling a condition with a deadline, never by a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from signal import SIGKILL, SIGTERM
from typing import Any

import aiodocker
import pytest

from corral.core.model import ContainerSpec, ExitReason
from corral.runtimes import (
    LaunchRequest,
    RuntimeUnavailableError,
    WorkloadStartError,
    pause,
)
from corral.runtimes import docker as docker_runtime
from corral.runtimes.docker import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_ROLE,
    ROLE_SANDBOX,
    DockerRuntime,
)
from tests.docker_env import (
    IMAGE,
    FakeEngineOutage,
    container_exists,
    docker_problem,
    eventually,
    remove_containers,
    serves,
    skip_or_fail,
)
from tests.harness import ExitRecorder

pytestmark = pytest.mark.docker

SLEEPER = ("sh", "-c", "sleep 300")


@dataclasses.dataclass
class Harness:
    """Creates runtimes and launch requests, and cleans up after the test."""

    docker: aiodocker.Docker
    label: str
    """``corral.test=<uuid>``, carried by every container of this test."""
    exits: ExitRecorder = dataclasses.field(default_factory=ExitRecorder)
    runtimes: list[DockerRuntime] = dataclasses.field(default_factory=list)

    def runtime(
        self,
        exits: ExitRecorder | None = None,
        url: str | None = None,
        *,
        network_sandbox: bool = True,
    ) -> DockerRuntime:
        runtime = DockerRuntime(
            on_exit=exits if exits is not None else self.exits,
            url=url,
            network_sandbox=network_sandbox,
        )
        self.runtimes.append(runtime)
        return runtime

    def request(
        self,
        command: tuple[str, ...] = SLEEPER,
        *,
        name: str = "web",
        env: Mapping[str, str] | None = None,
        **spec: Any,
    ) -> LaunchRequest:
        key, _, value = self.label.partition("=")
        spec.setdefault("image", IMAGE)
        labels = {key: value, **spec.pop("labels", {})}
        return LaunchRequest(
            name=name,
            instance_id=uuid.uuid4().hex,
            spec=ContainerSpec(command=command, labels=labels, **spec),
            env=dict(env or {}),
        )

    async def state(self, container_id: str) -> dict[str, Any]:
        info = await self.docker.containers.container(container_id).show()
        state: dict[str, Any] = info["State"]
        return state

    async def show(self, container_id: str) -> dict[str, Any]:
        info: dict[str, Any] = await self.docker.containers.container(
            container_id
        ).show()
        return info

    async def sandbox_of(self, container_id: str) -> str:
        """The id of the sandbox whose network the instance joined."""
        mode = (await self.show(container_id))["HostConfig"]["NetworkMode"]
        assert mode.startswith("container:"), mode
        return str(mode.removeprefix("container:"))

    async def sandboxes(self, name: str = "web") -> list[str]:
        """The ids of this test's sandbox containers of ``name``."""
        filters = json.dumps(
            {
                "label": [
                    self.label,
                    f"{LABEL_ROLE}={ROLE_SANDBOX}",
                    f"{LABEL_NAME}={name}",
                ]
            }
        )
        listed = await self.docker.containers.list(all=True, filters=filters)
        return [container.id for container in listed]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    problem = await docker_problem()
    if problem is not None:
        skip_or_fail(problem)

    label = f"corral.test={uuid.uuid4().hex}"
    async with aiodocker.Docker() as docker:
        harness = Harness(docker=docker, label=label)
        try:
            yield harness
        finally:
            for runtime in harness.runtimes:
                await runtime.close()
            await remove_containers(docker, label)


async def test_exit_code_is_observed_through_events(harness: Harness) -> None:
    runtime = harness.runtime()
    request = harness.request(("sh", "-c", "sleep 0.5; exit 3"))

    began = time.perf_counter()
    handle = await runtime.start(request)
    print(f"\ndocker start latency: {(time.perf_counter() - began) * 1000:.0f} ms")
    exit_info = await harness.exits.wait(request.instance_id)

    assert exit_info.reason is ExitReason.EXITED
    assert exit_info.exit_code == 3
    lag = harness.exits.times[request.instance_id] - exit_info.time.timestamp()
    print(f"docker die event -> on_exit latency: {lag * 1000:.0f} ms")
    assert not runtime.is_running("web", request.instance_id)
    await eventually(
        lambda: _gone(harness, handle.runtime_id), "the container is removed"
    )
    assert harness.exits.count(request.instance_id) == 1


async def test_instant_exit_is_not_lost(harness: Harness) -> None:
    runtime = harness.runtime()
    request = harness.request(("sh", "-c", "exit 0"))

    await runtime.start(request)

    exit_info = await harness.exits.wait(request.instance_id)
    assert (exit_info.reason, exit_info.exit_code) == (ExitReason.EXITED, 0)


@pytest.mark.parametrize("memory", ["", "64m"], ids=["unlimited", "limited"])
async def test_kill_by_someone_else_is_signaled_not_oom(
    harness: Harness, memory: str
) -> None:
    runtime = harness.runtime()
    request = harness.request(memory=memory)
    handle = await runtime.start(request)

    await harness.docker.containers.container(handle.runtime_id).kill(signal="SIGKILL")

    exit_info = await harness.exits.wait(request.instance_id)
    assert exit_info.reason is ExitReason.SIGNALED
    assert exit_info.signal == SIGKILL


async def test_memory_hog_over_its_limit_is_oom_killed(harness: Harness) -> None:
    runtime = harness.runtime()
    request = harness.request(("memhog",), memory="32m")

    await runtime.start(request)

    exit_info = await harness.exits.wait(request.instance_id)
    assert exit_info.reason is ExitReason.OOM_KILLED, exit_info
    assert "OOM" in exit_info.message


@pytest.mark.parametrize("network_sandbox", [True, False], ids=["sandbox", "own"])
async def test_resources_reach_the_container(
    harness: Harness, network_sandbox: bool
) -> None:
    runtime = harness.runtime(network_sandbox=network_sandbox)
    request = harness.request(memory="64m", cpus=0.5, ports=("127.0.0.1::8080",))

    handle = await runtime.start(request)

    host = (await harness.show(handle.runtime_id))["HostConfig"]
    assert host["Memory"] == 64 * 2**20
    assert host["NanoCpus"] == 500_000_000
    assert host["RestartPolicy"]["Name"] in ("", "no")
    # The ports are published by whoever owns the network.
    owner = host
    if network_sandbox:
        owner = (await harness.show(await harness.sandbox_of(handle.runtime_id)))[
            "HostConfig"
        ]
        assert owner["RestartPolicy"]["Name"] in ("", "no")
    else:
        assert host["NetworkMode"] in ("default", "bridge")
    assert owner["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]
    }


async def test_stop_kills_a_container_that_ignores_sigterm(harness: Harness) -> None:
    runtime = harness.runtime()
    request = harness.request(("sh", "-c", "trap '' TERM; sleep 300"))
    handle = await runtime.start(request)
    await eventually(lambda: _running(harness, handle.runtime_id), "the container runs")

    began = time.monotonic()
    await runtime.stop("web", request.instance_id, SIGTERM, grace=1.0)
    elapsed = time.monotonic() - began

    assert 1.0 <= elapsed < 5.0
    assert not await container_exists(harness.docker, handle.runtime_id)
    exit_info = await harness.exits.wait(request.instance_id, timeout=0.1)
    assert (exit_info.reason, exit_info.signal) == (ExitReason.SIGNALED, SIGKILL)
    assert harness.exits.count(request.instance_id) == 1


async def test_stop_with_sigterm_ends_within_the_grace(harness: Harness) -> None:
    runtime = harness.runtime()
    # The shell is the container's pid 1, which ignores signals it has no
    # handler for: the workload must trap TERM, and have done so, to honour it.
    script = "trap 'exit 143' TERM; echo trapped; sleep 300 & wait"
    request = harness.request(("sh", "-c", script))
    handle = await runtime.start(request)
    await eventually(
        lambda: _logged(harness, handle.runtime_id, "trapped"), "the trap is set"
    )

    began = time.monotonic()
    await runtime.stop("web", request.instance_id, SIGTERM, grace=10.0)

    assert time.monotonic() - began < 5.0
    assert not await container_exists(harness.docker, handle.runtime_id)
    exit_info = await harness.exits.wait(request.instance_id, timeout=0.1)
    assert (exit_info.reason, exit_info.signal) == (ExitReason.SIGNALED, SIGTERM)
    await runtime.stop("web", request.instance_id, SIGTERM, grace=1.0)  # No-op.


async def test_missing_image_is_a_start_error_naming_it(harness: Harness) -> None:
    runtime = harness.runtime()
    image = f"corral-no-such-image-{uuid.uuid4().hex[:8]}:latest"
    request = harness.request(image=image)

    with pytest.raises(WorkloadStartError) as caught:
        await runtime.start(request)

    message = str(caught.value)
    assert image in message
    assert "missing locally" in message
    assert "docker pull" in message
    assert not runtime.is_running("web", request.instance_id)


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory", "lots"), ("ports", ("http",)), ("ports", ("99999",)), ("cpus", -1.0)],
)
async def test_bad_resources_are_start_errors_naming_the_field(
    harness: Harness, field: str, value: object
) -> None:
    runtime = harness.runtime()
    bad: dict[str, Any] = {field: value}
    request = harness.request(**bad)

    with pytest.raises(WorkloadStartError, match=f"spec.{field}"):
        await runtime.start(request)


async def test_unknown_command_is_a_start_error_leaving_nothing(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    request = harness.request(("no-such-command",))

    with pytest.raises(WorkloadStartError, match="no-such-command"):
        await runtime.start(request)

    await eventually(lambda: _no_instances(harness), "the failed container is removed")
    assert harness.exits.count(request.instance_id) == 0
    # The sandbox stays for the retry, until corral releases the name.
    assert len(await harness.sandboxes()) == 1
    await runtime.release("web")
    assert await harness.sandboxes() == []


async def test_labels_are_set(harness: Harness) -> None:
    runtime = harness.runtime()
    request = harness.request(labels={"team": "infra"})

    handle = await runtime.start(request)

    info = await harness.docker.containers.container(handle.runtime_id).show()
    labels = info["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_NAME] == "web"
    assert labels[LABEL_INSTANCE] == request.instance_id
    assert labels["team"] == "infra"
    assert info["Name"] == f"/corral-web-{request.instance_id[:12]}"


async def test_env_is_delivered_without_host_variables(harness: Harness) -> None:
    runtime = harness.runtime()
    request = harness.request(
        ("sh", "-c", 'echo "FOO=$FOO PATH=$PATH"; sleep 300'),
        env={"FOO": "bar baz", "PATH": "/host/only/bin"},
    )
    handle = await runtime.start(request)
    expected = "FOO=bar baz PATH=/bin"

    await eventually(
        lambda: _logged(harness, handle.runtime_id, expected),
        "the workload printed its environment",
    )


async def test_adopt_finds_the_running_container_by_label(harness: Harness) -> None:
    first = harness.runtime()
    request = harness.request()
    handle = await first.start(request)
    await first.close()  # corral goes away; the container keeps running.
    assert (await harness.state(handle.runtime_id))["Running"]

    exits = ExitRecorder()
    second = harness.runtime(exits)
    adopted = await second.adopt("web", request.instance_id, "", "")

    assert adopted is not None
    assert adopted.runtime_id == handle.runtime_id
    assert second.is_running("web", request.instance_id)
    await second.stop("web", request.instance_id, SIGKILL, grace=0.0)
    exit_info = await exits.wait(request.instance_id)
    assert exit_info.signal == SIGKILL
    assert harness.exits.count(request.instance_id) == 0


async def test_adopt_of_an_ended_container_keeps_its_exit_code(
    harness: Harness,
) -> None:
    first = harness.runtime()
    request = harness.request(("sh", "-c", "sleep 0.3; exit 7"))
    handle = await first.start(request)
    await first.close()

    async def ended() -> bool:
        return not (await harness.state(handle.runtime_id))["Running"]

    await eventually(ended, "the container ended while nobody watched")
    second = harness.runtime()

    assert await second.adopt("web", request.instance_id, handle.runtime_id, "") is None
    last = second.last_exit(request.instance_id)
    assert last is not None
    assert (last.reason, last.exit_code) == (ExitReason.EXITED, 7)
    assert not await container_exists(harness.docker, handle.runtime_id)
    assert harness.exits.calls == []


async def test_adopt_of_an_unknown_instance_is_none(harness: Harness) -> None:
    runtime = harness.runtime()

    assert await runtime.adopt("web", uuid.uuid4().hex, "", "") is None


async def test_orphans_are_listed_and_removed(harness: Harness) -> None:
    first = harness.runtime()
    request = harness.request()
    handle = await first.start(request)
    await first.close()
    second = harness.runtime()

    orphans = await second.orphans(known_instances=set())
    assert (handle.runtime_id, "web", request.instance_id) in orphans
    known = await second.orphans(known_instances={request.instance_id})
    assert all(orphan.instance_id != request.instance_id for orphan in known)

    await second.remove(handle.runtime_id)
    assert not await container_exists(harness.docker, handle.runtime_id)
    await second.remove(handle.runtime_id)  # Already gone: fine.


async def test_exit_during_an_engine_outage_is_reported_once_on_return(
    harness: Harness, tmp_path: Path
) -> None:
    outage = FakeEngineOutage(tmp_path / "engine.sock")
    await outage.come_back()
    runtime = harness.runtime(url=outage.url)
    request = harness.request()
    handle = await runtime.start(request)
    await eventually(lambda: runtime.available, "the runtime sees the engine")

    # The engine goes away; the container dies meanwhile.
    await outage.go_down()
    with pytest.raises(RuntimeUnavailableError):
        await runtime.start(harness.request())
    assert not runtime.available
    await harness.docker.containers.container(handle.runtime_id).kill(signal="SIGKILL")
    await eventually(lambda: _stopped(harness, handle.runtime_id), "the container died")
    assert runtime.is_running("web", request.instance_id)  # Last known state.
    assert harness.exits.calls == []

    # Back: the exit is delivered exactly once.
    await outage.come_back()
    exit_info = await harness.exits.wait(request.instance_id)
    assert (exit_info.reason, exit_info.signal) == (ExitReason.SIGNALED, SIGKILL)
    assert runtime.available
    await eventually(
        lambda: _gone(harness, handle.runtime_id), "the container is removed"
    )
    assert harness.exits.count(request.instance_id) == 1
    await outage.go_down()


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("CORRAL_TEST_RESTART_DOCKERD"),
    reason="restarts the shared engine; set CORRAL_TEST_RESTART_DOCKERD=1 (root)",
)
async def test_engine_killed_and_restarted_under_running_containers(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    command = ("sh", "-c", "trap 'exit 143' TERM; sleep 300 & wait")
    requests = [harness.request(command, name=f"w{index}") for index in range(3)]
    for request in requests:
        await runtime.start(request)

    # SIGKILL dockerd: no die event can be sent; the containers outlive it.
    pid = int(await asyncio.to_thread(Path("/var/run/docker.pid").read_text))
    os.kill(pid, SIGKILL)
    await eventually(lambda: not runtime.available, "the runtime sees the outage")
    await eventually(lambda: not _is_live(pid), "the old dockerd is gone")
    assert all(runtime.is_running(r.name, r.instance_id) for r in requests)

    # The engine returns (and stops what it finds): each exit arrives once.
    script = Path(__file__).parents[1] / ".ci" / "docker.sh"
    process = await asyncio.create_subprocess_exec(str(script))
    assert await process.wait() == 0
    for request in requests:
        exit_info = await harness.exits.wait(request.instance_id, timeout=60.0)
        assert exit_info.reason is ExitReason.SIGNALED, exit_info
    await eventually(lambda: runtime.available, "the runtime sees the engine")
    assert all(harness.exits.count(r.instance_id) == 1 for r in requests)
    await eventually(lambda: _no_containers(harness), "the containers are removed")


HTTPD = (
    "sh",
    "-c",
    "mkdir -p /www && echo served > /www/index && httpd -f -p 8080 -h /www",
)
"""Serves ``GET /index`` on port 8080 inside the container."""


async def test_a_restart_keeps_the_sandbox_its_address_and_host_port(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    first = harness.request(HTTPD, ports=("127.0.0.1::8080",))
    handle = await runtime.start(first)
    sandbox_id = await harness.sandbox_of(handle.runtime_id)
    sandbox = await harness.show(sandbox_id)
    host_port = sandbox["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    address = sandbox["NetworkSettings"]["IPAddress"]
    await eventually(lambda: serves(host_port), "the instance serves on its port")

    # The instance dies; its replacement joins the same sandbox.
    await harness.docker.containers.container(handle.runtime_id).kill(signal="SIGKILL")
    await harness.exits.wait(first.instance_id)
    second = harness.request(HTTPD, ports=("127.0.0.1::8080",))
    replacement = await runtime.start(second)

    assert await harness.sandbox_of(replacement.runtime_id) == sandbox_id
    again = await harness.show(sandbox_id)
    assert again["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"] == host_port
    assert again["NetworkSettings"]["IPAddress"] == address
    await eventually(lambda: serves(host_port), "the replacement serves there too")
    assert await harness.sandboxes() == [sandbox_id]


async def test_changed_ports_get_a_new_sandbox_and_the_old_one_goes(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    first = harness.request(ports=("127.0.0.1::8080",))
    handle = await runtime.start(first)
    old_sandbox = await harness.sandbox_of(handle.runtime_id)
    await runtime.stop("web", first.instance_id, SIGKILL, 0)

    second = harness.request(ports=("127.0.0.1::9090",))
    replacement = await runtime.start(second)

    new_sandbox = await harness.sandbox_of(replacement.runtime_id)
    assert new_sandbox != old_sandbox
    ports = (await harness.show(new_sandbox))["HostConfig"]["PortBindings"]
    assert list(ports) == ["9090/tcp"]
    assert await harness.sandboxes() == [new_sandbox]


async def test_release_keeps_a_sandbox_in_use_and_removes_an_unused_one(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    request = harness.request()
    handle = await runtime.start(request)
    sandbox_id = await harness.sandbox_of(handle.runtime_id)

    await runtime.release("web")
    assert await harness.sandboxes() == [sandbox_id]
    assert await _running(harness, handle.runtime_id)

    await runtime.stop("web", request.instance_id, SIGKILL, 0)
    await runtime.release("web")
    assert await harness.sandboxes() == []
    await runtime.release("web")  # Nothing left: fine.
    await runtime.release("never-started")


async def test_an_unused_sandbox_is_removed_after_its_idle_time(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_runtime, "_SANDBOX_IDLE", 0.2)
    runtime = harness.runtime()
    request = harness.request(("sh", "-c", "exit 3"))

    await runtime.start(request)
    assert (await harness.exits.wait(request.instance_id)).exit_code == 3

    async def released() -> bool:
        return await harness.sandboxes() == []

    await eventually(released, "the idle sandbox is removed")


async def test_a_sandbox_that_dies_takes_its_instance_down_saying_why(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    request = harness.request()
    handle = await runtime.start(request)
    sandbox_id = await harness.sandbox_of(handle.runtime_id)

    await harness.docker.containers.container(sandbox_id).kill(signal="SIGKILL")

    exit_info = await harness.exits.wait(request.instance_id)
    assert (exit_info.reason, exit_info.signal) == (ExitReason.SIGNALED, SIGKILL)
    assert "network sandbox" in exit_info.message
    await eventually(lambda: _gone(harness, sandbox_id), "the dead sandbox is removed")
    # The next instance gets a new sandbox.
    replacement = await runtime.start(harness.request())
    assert await harness.sandbox_of(replacement.runtime_id) != sandbox_id


async def test_a_new_operator_adopts_the_sandbox_with_the_instance(
    harness: Harness,
) -> None:
    first = harness.runtime()
    request = harness.request()
    handle = await first.start(request)
    sandbox_id = await harness.sandbox_of(handle.runtime_id)
    await first.close()

    second = harness.runtime()
    assert await second.adopt("web", request.instance_id, handle.runtime_id, "")
    assert await second.orphans(known_instances={request.instance_id}) == []
    await second.stop("web", request.instance_id, SIGKILL, 0)
    replacement = await second.start(harness.request())

    assert await harness.sandbox_of(replacement.runtime_id) == sandbox_id
    assert await harness.sandboxes() == [sandbox_id]


async def test_the_pause_image_is_made_when_the_engine_lacks_it(
    harness: Harness,
) -> None:
    await _delete_pause_image(harness)
    runtime = harness.runtime()

    request = harness.request()
    handle = await runtime.start(request)

    image = await harness.docker.images.inspect(pause.PAUSE_IMAGE)
    assert image["Config"]["Entrypoint"] == ["/pause"]
    sandbox = await harness.show(await harness.sandbox_of(handle.runtime_id))
    assert sandbox["State"]["Running"]
    # The pause process ends at once, and cleanly, on a polite stop.
    await runtime.stop("web", request.instance_id, SIGKILL, 0)
    started = time.monotonic()
    await harness.docker.containers.container(sandbox["Id"]).stop(t=30)
    assert time.monotonic() - started < 10
    assert (await harness.state(sandbox["Id"]))["ExitCode"] == 0

    # Pruned while corral runs: made again for the next sandbox.
    await runtime.release("web")
    await _delete_pause_image(harness)
    replacement = await runtime.start(harness.request())
    assert (await harness.state(await harness.sandbox_of(replacement.runtime_id)))[
        "Running"
    ]


async def test_a_container_of_someone_else_s_under_the_sandbox_name_is_left_alone(
    harness: Harness,
) -> None:
    key, _, value = harness.label.partition("=")
    squatter = await harness.docker.containers.create(
        {"Image": IMAGE, "Cmd": list(SLEEPER), "Labels": {key: value}},
        name="corral-web-sandbox",
    )
    runtime = harness.runtime()

    with pytest.raises(WorkloadStartError, match="sandbox of 'web' cannot be created"):
        await runtime.start(harness.request())

    assert await container_exists(harness.docker, squatter.id)
    await eventually(lambda: _no_instances(harness), "nothing else is left")


async def test_release_keeps_a_sandbox_an_unwatched_instance_still_uses(
    harness: Harness,
) -> None:
    first = harness.runtime()
    handle = await first.start(harness.request())
    sandbox_id = await harness.sandbox_of(handle.runtime_id)
    await first.close()

    # A new runtime that did not adopt the instance (its adoption failed).
    second = harness.runtime()
    await second.orphans(known_instances=set())
    await second.release("web")

    assert await harness.sandboxes() == [sandbox_id]
    assert await _running(harness, handle.runtime_id)


async def _delete_pause_image(harness: Harness) -> None:
    with contextlib.suppress(aiodocker.DockerError):  # Absent already: fine.
        await harness.docker.images.delete(pause.PAUSE_IMAGE, force=True)


async def test_close_leaves_containers_running(harness: Harness) -> None:
    runtime = harness.runtime()
    request = harness.request()
    handle = await runtime.start(request)

    await runtime.close()

    assert (await harness.state(handle.runtime_id))["Running"]
    with pytest.raises(RuntimeUnavailableError):
        await runtime.start(harness.request())


async def _logged(harness: Harness, container_id: str, text: str) -> bool:
    container = harness.docker.containers.container(container_id)
    lines = await container.log(stdout=True, stderr=True)
    return any(text in line for line in lines)


def _is_live(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False

    return stat[stat.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


async def _running(harness: Harness, container_id: str) -> bool:
    return bool((await harness.state(container_id))["Running"])


async def _stopped(harness: Harness, container_id: str) -> bool:
    return not (await harness.state(container_id))["Running"]


async def _gone(harness: Harness, container_id: str) -> bool:
    return not await container_exists(harness.docker, container_id)


async def _no_instances(harness: Harness) -> bool:
    filters = json.dumps({"label": [harness.label, LABEL_INSTANCE]})
    listed = await harness.docker.containers.list(all=True, filters=filters)
    return not listed


async def _no_containers(harness: Harness) -> bool:
    filters = f'{{"label": ["{harness.label}"]}}'
    listed = await harness.docker.containers.list(all=True, filters=filters)
    return not listed
