"""The operator over the docker runtime across its own death and the engine's
outages (DESIGN.md rule 9): adoption after SIGKILL of ``corral serve``, a
container that ended while corral was down, a labelled container no record
knows, and an unreachable engine.

Needs the engine and the ``corral-test-busybox`` image from ``.ci/docker.sh``;
without them the tests skip (and fail when ``CI`` is set). Every container a
test creates carries a ``corral.test=<uuid>`` label; teardown kills the
corral processes first and then removes every container with the label.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import grpc
import pytest

from corral.core import operator as operator_module
from corral.core.model import EventType
from corral.runtimes.docker import LABEL_INSTANCE, LABEL_MANAGED, LABEL_NAME
from corral.v1 import container_pb2, event_pb2, operator_pb2, operator_pb2_grpc
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
from tests.harness import CorralProcess, ServerFactory

pytestmark = pytest.mark.docker

C = container_pb2
State = container_pb2.ContainerState

TEST_LABEL = "corral.test"
SLEEP = "trap 'exit 0' TERM; sleep 300 & wait"
QUITS_ON_USR1 = "trap 'exit 7' USR1; trap 'exit 0' TERM; sleep 300 & wait"
"""Exits with code 7 when sent SIGUSR1: an end with a real exit code that
someone outside corral can cause at a chosen moment."""


@dataclasses.dataclass
class DockerFleet:
    """A docker fleet file for this test, and the corral processes serving it."""

    docker: aiodocker.Docker
    tmp_path: Path
    addresses: set[str]
    label: str
    processes: list[CorralProcess] = dataclasses.field(default_factory=list)

    def fleet(self, **members: str) -> str:
        """A docker fleet file with :func:`member_tables`."""
        operator = '[operator]\nruntime = "docker"\nreconcile_interval = "0s"\n\n'
        return operator + member_tables(self.label, **members)

    def serve(self, fleet: str) -> CorralProcess:
        """Starts ``corral serve`` on ``fleet`` (same data dir every time)."""
        config = self.tmp_path / "fleet.toml"
        config.write_text(fleet)
        process = CorralProcess(config, self.tmp_path / "data", self.addresses)
        self.processes.append(process)
        process.start()
        return process

    async def containers(self, name: str) -> list[dict[str, Any]]:
        """This test's instance containers of corral container ``name``,
        running or not (not its network sandbox)."""
        filters = json.dumps(
            {
                "label": [
                    f"{LABEL_NAME}={name}",
                    f"{TEST_LABEL}={self.label}",
                    LABEL_INSTANCE,
                ]
            }
        )
        listed = await self.docker.containers.list(all=True, filters=filters)
        return [await container.show() for container in listed]

    async def inspect(self, container_id: str) -> dict[str, Any]:
        return await self.docker.containers.container(container_id).show()


def member_tables(label: str, **members: str) -> str:
    """``[[containers]]`` tables, one restarted-at-once member per ``name=cmd``,
    each running ``sh -c cmd`` in the test image and labelled ``label``."""
    tables = []
    for name, cmd in members.items():
        tables += [
            "[[containers]]",
            f"name = {json.dumps(name)}",
            f"image = {json.dumps(IMAGE)}",
            f"command = {json.dumps(['sh', '-c', cmd])}",
            f"labels = {{ {json.dumps(TEST_LABEL)} = {json.dumps(label)} }}",
            'restart_policy.backoff = { initial = "0s", max = "1s" }',
            "",
        ]
    return "\n".join(tables)


@pytest.fixture
async def docker_fleet(
    tmp_path: Path, workload_addresses: set[str]
) -> AsyncIterator[DockerFleet]:
    problem = await docker_problem()
    if problem is not None:
        skip_or_fail(problem)
    async with aiodocker.Docker() as docker:
        fleet = DockerFleet(docker, tmp_path, workload_addresses, uuid.uuid4().hex)
        try:
            yield fleet
        finally:
            # corral first: a live operator would replace what we remove.
            for process in fleet.processes:
                process.kill()
            await remove_containers(docker, f"{TEST_LABEL}={fleet.label}")


@dataclasses.dataclass
class ProxiedEngine:
    """corral's way to the engine runs through :class:`FakeEngineOutage`."""

    outage: FakeEngineOutage
    docker: aiodocker.Docker
    """A client of the real engine, past the proxy."""
    label: str
    """This test's ``corral.test`` label value."""


@pytest.fixture
async def proxied(
    servers: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ProxiedEngine]:
    """Points corral servers started by the test at an engine proxy; in
    teardown closes them and removes the test's containers."""
    problem = await docker_problem()
    if problem is not None:
        skip_or_fail(problem)
    outage = FakeEngineOutage(tmp_path / "engine.sock")
    await outage.come_back()
    monkeypatch.setenv("DOCKER_HOST", outage.url)
    label = uuid.uuid4().hex
    async with aiodocker.Docker(url="unix:///var/run/docker.sock") as docker:
        try:
            yield ProxiedEngine(outage, docker, label)
        finally:
            outage.resume()
            await servers.close()
            await outage.go_down()
            await remove_containers(docker, f"{TEST_LABEL}={label}")


@contextlib.asynccontextmanager
async def operator_stub(
    address: str,
) -> AsyncIterator[operator_pb2_grpc.OperatorServiceStub]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield operator_pb2_grpc.OperatorServiceStub(channel)


async def get(stub: operator_pb2_grpc.OperatorServiceStub, name: str) -> C.Container:
    reply = await stub.GetContainer(operator_pb2.GetContainerRequest(name=name))
    return reply.container


async def events_about(
    stub: operator_pb2_grpc.OperatorServiceStub, name: str
) -> list[Any]:
    reply = await stub.ListEvents(
        operator_pb2.ListEventsRequest(names=[name], page_size=1000)
    )
    return list(reply.events)


async def test_sigkilled_corral_adopts_running_containers_and_settles_ended_ones(
    docker_fleet: DockerFleet,
) -> None:
    fleet = docker_fleet.fleet(steady=SLEEP, quitter=QUITS_ON_USR1)
    first = docker_fleet.serve(fleet)
    async with operator_stub(first.address) as stub:

        async def both_running() -> bool:
            states = [(await get(stub, n)).state for n in ("steady", "quitter")]
            return states == [State.CONTAINER_STATE_RUNNING] * 2

        await eventually(both_running, "both members run")
        steady = await get(stub, "steady")
        quitter = await get(stub, "quitter")

    # corral dies without a word; meanwhile one workload exits with code 7.
    first.kill()
    await docker_fleet.docker.containers.container(quitter.runtime_id).kill(
        signal="SIGUSR1"
    )

    async def quitter_ended() -> bool:
        state = (await docker_fleet.inspect(quitter.runtime_id))["State"]
        return not state["Running"]

    await eventually(quitter_ended, "the quitter ends while corral is down")
    assert (await docker_fleet.inspect(quitter.runtime_id))["State"]["ExitCode"] == 7

    second = docker_fleet.serve(fleet)
    async with operator_stub(second.address) as stub:
        # The running one is adopted: same instance, same container, no copy.
        adopted = await get(stub, "steady")
        assert adopted.state == State.CONTAINER_STATE_RUNNING
        assert adopted.instance_id == steady.instance_id
        assert adopted.runtime_id == steady.runtime_id
        assert adopted.restart_count == 0
        types = [e.type for e in await events_about(stub, "steady")]
        assert types.count(event_pb2.EventType.Value("EVENT_TYPE_ADOPTED")) == 1
        steady_containers = await docker_fleet.containers("steady")
        assert [c["Id"] for c in steady_containers] == [steady.runtime_id]

        # The ended one is handled by its policy (on_failure), with its real
        # exit code, and replaced by exactly one new container.
        async def quitter_replaced() -> C.Container | None:
            current = await get(stub, "quitter")
            running = current.state == State.CONTAINER_STATE_RUNNING
            new = current.instance_id != quitter.instance_id
            return current if running and new else None

        await eventually(quitter_replaced, "the quitter is restarted")
        replaced = await get(stub, "quitter")
        crash = replaced.crash_history[-1]
        assert crash.reason == C.ExitReason.EXIT_REASON_EXITED, crash
        assert crash.exit_code == 7
        assert crash.instance_id == quitter.instance_id
        assert replaced.restart_count == 1
        quitter_containers = await docker_fleet.containers("quitter")
        assert [c["Id"] for c in quitter_containers] == [replaced.runtime_id]
        assert quitter_containers[0]["Config"]["Labels"][LABEL_INSTANCE] == (
            replaced.instance_id
        )


async def test_a_labelled_container_no_record_knows_is_reported_and_removed(
    docker_fleet: DockerFleet,
) -> None:
    stray_instance = uuid.uuid4().hex
    stray = await docker_fleet.docker.containers.create(
        {
            "Image": IMAGE,
            "Cmd": ["sh", "-c", SLEEP],
            "Labels": {
                LABEL_MANAGED: "true",
                LABEL_NAME: "stray",
                LABEL_INSTANCE: stray_instance,
                TEST_LABEL: docker_fleet.label,
            },
        },
        name=f"corral-stray-{stray_instance[:12]}",
    )
    await stray.start()

    process = docker_fleet.serve(docker_fleet.fleet(steady=SLEEP))

    async def stray_gone() -> bool:
        return not await container_exists(docker_fleet.docker, stray.id)

    await eventually(stray_gone, "the unknown container is removed")
    async with operator_stub(process.address) as stub:
        events = await events_about(stub, "stray")
        assert len(events) == 1, events
        assert events[0].instance_id == stray_instance
        assert stray.id[:12] in events[0].message
        # The fleet's own member is untouched.
        steady = await get(stub, "steady")
        assert steady.state == State.CONTAINER_STATE_RUNNING
        assert len(await docker_fleet.containers("steady")) == 1


async def test_an_unreachable_engine_leaves_corral_serving_and_recovers(
    servers: ServerFactory,
    proxied: ProxiedEngine,
) -> None:
    outage, docker, label = proxied.outage, proxied.docker, proxied.label
    fleet = member_tables(label, steady=SLEEP, quitter=QUITS_ON_USR1)

    h = await servers.start(fleet, runtime="docker", reconcile_interval="0s")
    steady = await h.get("steady")
    quitter = await h.get("quitter")
    assert steady.state == quitter.state == State.CONTAINER_STATE_RUNNING

    # The engine goes away: corral serves on and says it cannot tell.
    await outage.go_down()
    await h.wait_event("steady", EventType.UNKNOWN, timeout=30)
    await h.wait_event("quitter", EventType.UNKNOWN, after=0, timeout=30)
    assert (await h.get("steady")).state == State.CONTAINER_STATE_UNKNOWN
    await docker.containers.container(quitter.runtime_id).kill(signal="SIGUSR1")

    # It returns: the live one is kept, the dead one handled once.
    await outage.come_back()

    async def recovered() -> bool:
        s, q = await h.get("steady"), await h.get("quitter")
        return (
            s.state == State.CONTAINER_STATE_RUNNING
            and q.state == State.CONTAINER_STATE_RUNNING
            and q.instance_id != quitter.instance_id
        )

    await eventually(recovered, "both run again", timeout=30)
    again = await h.get("steady")
    assert (again.instance_id, again.runtime_id) == (
        steady.instance_id,
        steady.runtime_id,
    )
    replaced = await h.get("quitter")
    assert [c.exit_code for c in replaced.crash_history] == [7]
    for name in ("steady", "quitter"):
        filters = json.dumps(
            {
                "label": [
                    f"{LABEL_NAME}={name}",
                    f"{TEST_LABEL}={label}",
                    LABEL_INSTANCE,
                ]
            }
        )
        listed = await docker.containers.list(all=True, filters=filters)
        assert len(listed) == 1, (name, [c.id for c in listed])

    # A Stop during an outage is recorded, then carried out on return.
    await outage.go_down()
    await h.wait_event("steady", EventType.UNKNOWN, timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.StopContainer(
            operator_pb2.StopContainerRequest(name="steady", grace_period="1s"),
            timeout=60,
        )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (await h.get("steady")).desired_state == (
        container_pb2.DesiredState.DESIRED_STATE_STOPPED
    )
    await outage.come_back()

    async def stopped() -> bool:
        return (await h.get("steady")).state == State.CONTAINER_STATE_STOPPED

    await eventually(stopped, "the recorded stop carried out", timeout=30)
    filters = json.dumps({"label": [f"{LABEL_NAME}=steady", f"{TEST_LABEL}={label}"]})

    async def gone() -> bool:
        return await docker.containers.list(filters=filters) == []

    await eventually(gone, "the stopped container gone", timeout=30)


async def test_a_stop_a_hung_engine_never_answers_is_given_up_then_carried_out(
    servers: ServerFactory,
    proxied: ProxiedEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outage, docker, label = proxied.outage, proxied.docker, proxied.label
    monkeypatch.setattr(operator_module, "_STOP_MARGIN", 1.0)
    filters = json.dumps(
        {"label": [f"{LABEL_NAME}=steady", f"{TEST_LABEL}={label}", LABEL_INSTANCE]}
    )

    h = await servers.start(
        member_tables(label, steady=SLEEP),
        runtime="docker",
        reconcile_interval="0s",
    )
    assert (await h.get("steady")).state == State.CONTAINER_STATE_RUNNING

    # The engine hangs: the stop is answered within its deadline.
    outage.stall()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.StopContainer(
            operator_pb2.StopContainerRequest(name="steady", grace_period="0s"),
            timeout=30,
        )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "did not confirm the stop" in (refused.value.details() or "")
    stopping = await h.get("steady")
    assert stopping.desired_state == (container_pb2.DesiredState.DESIRED_STATE_STOPPED)
    assert stopping.state == State.CONTAINER_STATE_STOPPING
    assert len(await docker.containers.list(filters=filters)) == 1

    # It answers again: the recorded stop is carried out.
    outage.resume()

    async def stopped() -> bool:
        return (await h.get("steady")).state == State.CONTAINER_STATE_STOPPED

    await eventually(stopped, "the recorded stop carried out", timeout=60)

    async def gone() -> bool:
        return await docker.containers.list(filters=filters) == []

    await eventually(gone, "the stopped container gone", timeout=30)


async def test_a_restart_a_hung_engine_holds_up_finishes_when_it_answers(
    servers: ServerFactory,
    proxied: ProxiedEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outage, docker, label = proxied.outage, proxied.docker, proxied.label
    monkeypatch.setattr(operator_module, "_STOP_MARGIN", 1.0)
    fleet = member_tables(label, steady=SLEEP).replace(
        'name = "steady"', 'name = "steady"\nstop_grace_period = "1s"'
    )

    h = await servers.start(fleet, runtime="docker", reconcile_interval="0s")
    before = await h.get("steady")
    assert before.state == State.CONTAINER_STATE_RUNNING

    # The engine hangs during a Restart: refused within its deadline,
    # and the old instance still runs (nothing new was started).
    outage.stall()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.RestartContainer(
            operator_pb2.RestartContainerRequest(name="steady"), timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (await h.get("steady")).instance_id == before.instance_id

    # It answers again: the old instance stops and a new one starts.
    outage.resume()

    async def restarted() -> bool:
        now = await h.get("steady")
        return (
            now.state == State.CONTAINER_STATE_RUNNING
            and now.instance_id != before.instance_id
        )

    await eventually(restarted, "the restart carried out", timeout=60)
    after = await h.get("steady")
    assert after.desired_state == container_pb2.DesiredState.DESIRED_STATE_RUNNING
    assert list(after.crash_history) == []  # An ordered stop, no crash.
    filters = json.dumps({"label": [f"{TEST_LABEL}={label}", LABEL_INSTANCE]})

    async def one_copy() -> bool:
        listed = await docker.containers.list(all=True, filters=filters)
        return [c.id for c in listed] == [after.runtime_id]

    await eventually(one_copy, "only the new instance is left", timeout=30)


async def test_a_served_port_survives_a_crash_and_is_freed_by_stop(
    docker_fleet: DockerFleet,
) -> None:
    serve = "mkdir -p /www && echo served > /www/index && httpd -f -p 8080 -h /www"
    fleet = docker_fleet.fleet(web=serve).replace(
        'name = "web"', 'name = "web"\nports = ["127.0.0.1::8080"]'
    )
    process = docker_fleet.serve(fleet)

    async with operator_stub(process.address) as stub:
        web = await get(stub, "web")
        assert web.state == State.CONTAINER_STATE_RUNNING
        sandbox_id = await _sandbox_of(docker_fleet, web.runtime_id)
        host_port = await _host_port(docker_fleet, sandbox_id)
        await eventually(lambda: serves(host_port), "web serves on its host port")

        # The instance is killed: corral's replacement serves on the same port.
        await docker_fleet.docker.containers.container(web.runtime_id).kill(
            signal="SIGKILL"
        )

        async def replaced() -> bool:
            current = await get(stub, "web")
            return (
                current.state == State.CONTAINER_STATE_RUNNING
                and current.instance_id != web.instance_id
            )

        await eventually(replaced, "web is restarted")
        again = await get(stub, "web")
        assert await _sandbox_of(docker_fleet, again.runtime_id) == sandbox_id
        await eventually(lambda: serves(host_port), "the replacement serves there")

        # Stopped for good: the sandbox goes, and with it the host port.
        await stub.StopContainer(
            operator_pb2.StopContainerRequest(name="web", grace_period="1s"),
            timeout=60,
        )

        async def released() -> bool:
            gone = not await container_exists(docker_fleet.docker, sandbox_id)
            return gone and not await _accepts(host_port)

        await eventually(released, "the sandbox and its port are released")


async def _sandbox_of(fleet: DockerFleet, container_id: str) -> str:
    mode = (await fleet.inspect(container_id))["HostConfig"]["NetworkMode"]
    assert mode.startswith("container:"), mode
    return str(mode.removeprefix("container:"))


async def _host_port(fleet: DockerFleet, sandbox_id: str) -> str:
    ports = (await fleet.inspect(sandbox_id))["NetworkSettings"]["Ports"]
    return str(ports["8080/tcp"][0]["HostPort"])


async def _accepts(host_port: str) -> bool:
    """True while something listens on the host port."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", int(host_port))
    except OSError:
        return False
    writer.close()
    return True


async def test_a_spec_changed_while_the_engine_was_down_is_applied_when_it_returns(
    servers: ServerFactory, proxied: ProxiedEngine
) -> None:
    outage, docker, label = proxied.outage, proxied.docker, proxied.label
    first = await servers.start(
        member_tables(label, steady=SLEEP), runtime="docker", reconcile_interval="0s"
    )
    before = await first.get("steady")
    assert before.state == State.CONTAINER_STATE_RUNNING
    await servers.stop(first)  # corral goes; its containers stay.

    # corral comes back with a changed spec while the engine is unreachable.
    await outage.go_down()
    changed = member_tables(label, steady=SLEEP).replace(
        'name = "steady"', 'name = "steady"\nenv = { SPEC = "2" }'
    )
    second = await servers.start(changed, runtime="docker", reconcile_interval="0s")
    assert (await second.get("steady")).state == State.CONTAINER_STATE_UNKNOWN

    # The engine returns: the old instance is replaced by one of the new spec.
    await outage.come_back()

    async def replaced() -> bool:
        now = await second.get("steady")
        return (
            now.state == State.CONTAINER_STATE_RUNNING
            and now.instance_id != before.instance_id
        )

    await eventually(replaced, "the changed member replaced", timeout=60)
    after = await second.get("steady")
    assert list(after.crash_history) == []
    env = (await docker.containers.container(after.runtime_id).show())["Config"]["Env"]
    assert "SPEC=2" in env
    filters = json.dumps({"label": [f"{TEST_LABEL}={label}", LABEL_INSTANCE]})

    async def one_copy() -> bool:
        listed = await docker.containers.list(all=True, filters=filters)
        return [c.id for c in listed] == [after.runtime_id]

    await eventually(one_copy, "only the new instance is left", timeout=30)
