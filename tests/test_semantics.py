"""The restart semantics of DESIGN.md (rules 1 to 8), end to end, against
both runtimes: the same tests run with the ``process`` runtime (local process
groups) and with the ``docker`` runtime (real containers of the
``corral-test-busybox`` image from ``.ci/docker.sh``).

Every workload is a shell command line, which both runtimes run as
``sh -c CMD``; the ``runtime`` fixture builds the spec for the runtime under
test and gives each test its own ``corral.test=<uuid>`` label, which every
docker container carries. At teardown the servers stop first, then every
container with the label is removed (process groups are killed by the
``workload_addresses`` fixture), whatever the test's outcome.

Docker tests are marked ``docker``; without an engine they skip, or fail when
``CI`` is set. API behaviour that does not depend on the runtime (bad
arguments, paging, the workload environment) stays in ``test_operator.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiodocker
import grpc
import pytest

from corral.core.clock import ManualClock
from corral.core.model import EventType, ExitReason
from corral.runtimes.docker import LABEL_INSTANCE, LABEL_NAME
from corral.v1 import container_pb2, operator_pb2
from tests.docker_env import IMAGE, docker_problem, remove_containers, skip_or_fail
from tests.harness import Harness, ServerFactory, error_info, eventually

C = container_pb2
State = container_pb2.ContainerState

TEST_LABEL = "corral.test"
"""Label key carried by every container of one test, for teardown."""

SLEEP = "trap 'exit 0' TERM; sleep 300 & wait"
"""Runs until stopped and ends cleanly on SIGTERM, also as a container's
PID 1 (which the kernel does not let SIGTERM end without a handler)."""
STUBBORN = "trap '' TERM; sleep 300 & wait"
"""Ignores SIGTERM, and so does its child, which inherits the disposition."""
MISSING_IMAGE = "corral-test-missing:never"


@dataclasses.dataclass
class RuntimeUnderTest:
    """The runtime a test runs against, and how to make and inspect workloads."""

    name: str
    """``process`` or ``docker``."""
    servers: ServerFactory
    label: str
    """This test's ``corral.test`` label value."""
    docker: aiodocker.Docker | None = None

    def spec(
        self,
        cmd: str,
        *,
        when: str = "on_failure",
        initial: str = "0s",
        window: str = "1m",
        allowed: int = 3,
        env: dict[str, str] | None = None,
        grace: str = "",
        success: tuple[int, ...] = (),
        memory: str = "",
        image: str = IMAGE,
    ) -> C.ContainerSpec:
        """A spec running ``sh -c cmd``, with zero restart delay unless told."""
        return C.ContainerSpec(
            command=["sh", "-c", cmd],
            image=image if self.name == "docker" else "",
            memory=memory,
            env=env or {},
            labels={TEST_LABEL: self.label},
            stop_grace_period=grace,
            restart_policy=C.RestartPolicy(
                when=C.RestartWhen.Value(f"RESTART_WHEN_{when.upper()}"),
                crash=C.CrashPolicy(window=window, allowed_crashes=allowed),
                success_exit_codes=list(success),
                backoff=C.Backoff(
                    initial=initial, max="1s" if initial == "0s" else "10s"
                ),
            ),
        )

    def member(self, name: str, cmd: str, **policy: Any) -> str:
        """A ``[[containers]]`` table running ``sh -c cmd``, for a fleet file."""
        lines = [
            "[[containers]]",
            f"name = {json.dumps(name)}",
            *([f"image = {json.dumps(IMAGE)}"] if self.name == "docker" else []),
            f"command = {json.dumps(['sh', '-c', cmd])}",
            f"labels = {{ {json.dumps(TEST_LABEL)} = {json.dumps(self.label)} }}",
            *(f"{key} = {value}" for key, value in policy.items()),
        ]
        return "\n".join(lines) + "\n\n"

    def unstartable(self, **policy: Any) -> tuple[C.ContainerSpec, tuple[str, ...]]:
        """A spec that cannot start, and what its failure message must say."""
        if self.name == "docker":
            spec = self.spec(SLEEP, image=MISSING_IMAGE, **policy)
            return spec, ("missing locally", f"docker pull {MISSING_IMAGE}")
        spec = self.spec(SLEEP, **policy)
        spec.command[:] = ["/nonexistent/binary"]
        return spec, ("not found",)

    async def start_server(self, fleet: str = "", **operator: Any) -> Harness:
        return await self.servers.start(fleet, runtime=self.name, **operator)

    async def alive(self, container: C.Container) -> bool:
        """True while the container's workload runs."""
        if self.docker is None:
            return bool(_group_pids(int(container.runtime_id)))
        try:
            info = await self.docker.containers.container(container.runtime_id).show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise
        return bool(info["State"]["Running"])

    async def sleeping(self, container: C.Container) -> bool:
        """True once the workload's shell has reached its ``sleep``, so its
        traps are installed."""
        if self.docker is None:
            leader = int(container.runtime_id)
            return any(_comm(pid) == "sleep" for pid in _group_pids(leader))
        try:
            top = await self.docker.containers.container(container.runtime_id).top()
        except aiodocker.DockerError:
            return False
        return any("sleep" in " ".join(row) for row in top.get("Processes") or [])

    async def kill(self, container: C.Container, sig: int) -> None:
        """Sends ``sig`` to the workload the way someone outside corral would."""
        if self.docker is None:
            os.killpg(int(container.runtime_id), sig)
            return
        await self.docker.containers.container(container.runtime_id).kill(
            signal=signal.Signals(sig).name
        )


def _group_pids(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@contextlib.asynccontextmanager
async def runtime_under_test(
    name: str, servers: ServerFactory
) -> AsyncIterator[RuntimeUnderTest]:
    """Sets up ``name``; for docker, removes every container of the test after."""
    label = uuid.uuid4().hex
    if name == "process":
        yield RuntimeUnderTest("process", servers, label)
        return

    problem = await docker_problem()
    if problem is not None:
        skip_or_fail(problem)
    async with aiodocker.Docker() as docker:
        try:
            yield RuntimeUnderTest("docker", servers, label, docker)
        finally:
            # Servers first: a live operator would replace what we remove.
            await servers.close()
            await remove_containers(docker, f"{TEST_LABEL}={label}")


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
async def runtime(
    request: pytest.FixtureRequest, servers: ServerFactory
) -> AsyncIterator[RuntimeUnderTest]:
    """Each runtime in turn: the test runs once against each."""
    async with runtime_under_test(request.param, servers) as under_test:
        yield under_test


@pytest.fixture
async def docker_runtime(servers: ServerFactory) -> AsyncIterator[RuntimeUnderTest]:
    """The docker runtime alone, for what only containers have."""
    async with runtime_under_test("docker", servers) as under_test:
        yield under_test


async def start(h: Harness, name: str, s: C.ContainerSpec, **kw: object) -> C.Container:
    reply = await h.stub.StartContainer(
        operator_pb2.StartContainerRequest(name=name, spec=s, **kw)  # type: ignore[arg-type]
    )
    return reply.container


# -- rule 2: workloads that cannot start


async def test_unstartable_workload_fails_to_start_under_backoff(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    spec, says = runtime.unstartable(initial="50ms", allowed=1)

    await start(h, "ghost", spec)

    event = await h.wait_event("ghost", EventType.START_FAILED)
    assert event.exit is not None
    for words in says:
        assert words in event.exit.message, event.exit.message
    await h.wait_event("ghost", EventType.BACKOFF)
    await h.wait_event("ghost", EventType.CRASH_LOOP)
    container = await h.get("ghost")
    assert container.state == State.CONTAINER_STATE_CRASH_LOOP
    assert container.last_exit.reason == C.ExitReason.EXIT_REASON_FAILED_TO_START
    assert len(container.crash_history) == 2


# -- rules 2 and 3: classification and policies


async def test_clean_exit_under_on_failure_is_not_restarted(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    await start(h, "oneshot", runtime.spec("exit 0"))

    await h.wait_event("oneshot", EventType.EXITED)

    container = await h.get("oneshot")
    assert container.state == State.CONTAINER_STATE_EXITED
    assert container.restart_count == 0
    assert container.last_exit.exit_code == 0
    assert len(container.crash_history) == 1


async def test_listed_success_code_is_a_clean_exit(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server()
    await start(h, "tempfail", runtime.spec("exit 75", success=(75,)))

    await h.wait_event("tempfail", EventType.EXITED)

    container = await h.get("tempfail")
    assert container.state == State.CONTAINER_STATE_EXITED
    assert container.restart_count == 0
    assert container.last_exit.exit_code == 75


async def test_never_runs_once_even_after_a_failure(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server()
    await start(h, "once", runtime.spec("exit 3", when="never"))

    event = await h.wait_event("once", EventType.EXITED)

    assert event.exit is not None and event.exit.exit_code == 3
    container = await h.get("once")
    assert container.state == State.CONTAINER_STATE_EXITED
    assert container.restart_count == 0
    assert len(container.crash_history) == 1


async def test_always_restarts_a_clean_exit(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server()
    first = await start(h, "loop", runtime.spec("exit 0", when="always", allowed=20))

    await h.wait_event("loop", EventType.EXITED)
    await h.wait_event("loop", EventType.RUNNING)

    container = await h.get("loop")
    assert container.restart_count >= 1
    assert container.instance_id != first.instance_id


async def test_failure_restarts_with_a_new_instance(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server()
    first = await start(h, "flaky", runtime.spec("exit 3"))

    exited = await h.wait_event("flaky", EventType.EXITED)
    assert exited.exit is not None and exited.exit.exit_code == 3
    await h.wait_event("flaky", EventType.STARTING)

    container = await h.get("flaky")
    assert container.instance_id != first.instance_id
    assert container.restart_count >= 1
    assert container.crash_history[0].reason == C.ExitReason.EXIT_REASON_EXITED
    assert container.crash_history[0].exit_code == 3


async def test_a_kill_by_someone_else_is_a_signaled_failure(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    first = await start(h, "victim", runtime.spec(SLEEP))

    await runtime.kill(first, signal.SIGKILL)

    exited = await h.wait_event("victim", EventType.EXITED)
    assert exited.exit is not None
    assert exited.exit.reason is ExitReason.SIGNALED
    assert exited.exit.signal == signal.SIGKILL
    await h.wait_event("victim", EventType.RUNNING)
    container = await h.get("victim")
    assert container.instance_id != first.instance_id
    assert container.crash_history[0].reason == C.ExitReason.EXIT_REASON_SIGNALED


async def test_backoff_waits_before_restarting(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server()
    await start(h, "slow", runtime.spec("exit 1", initial="400ms", allowed=5))

    backoff = await h.wait_event("slow", EventType.BACKOFF)
    container = await h.get("slow")
    assert container.state in (
        State.CONTAINER_STATE_BACKOFF,
        State.CONTAINER_STATE_STARTING,
        State.CONTAINER_STATE_RUNNING,
    )
    starting = await h.wait_event("slow", EventType.STARTING)

    waited = (starting.time - backoff.time).total_seconds()
    assert 0.35 <= waited < 5, waited


# -- rule 4: the crash-loop breaker


async def test_crash_loop_trips_refuses_start_and_clears(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    await start(h, "crasher", runtime.spec("exit 1", allowed=2))

    await h.wait_event("crasher", EventType.CRASH_LOOP)
    container = await h.get("crasher")
    assert container.state == State.CONTAINER_STATE_CRASH_LOOP
    assert container.crash_loop.active and container.crash_loop.count == 3
    assert len(container.crash_history) == 3

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.StartContainer(operator_pb2.StartContainerRequest(name="crasher"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ClearCrashHistory" in (refused.value.details() or "")
    assert error_info(refused.value)[0] == "CRASH_LOOP_DETECTED"

    # ClearCrashHistory re-arms and starts it at once.
    cleared = await h.stub.ClearCrashHistory(
        operator_pb2.ClearCrashHistoryRequest(name="crasher")
    )
    assert len(cleared.container.crash_history) <= 1
    await h.wait_event("crasher", EventType.STARTING)


async def test_force_starts_a_crash_looping_container(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    await start(h, "crasher", runtime.spec("exit 1", allowed=0))
    await h.wait_event("crasher", EventType.CRASH_LOOP)

    forced = await h.stub.StartContainer(
        operator_pb2.StartContainerRequest(name="crasher", force=True)
    )

    assert forced.container.state != State.CONTAINER_STATE_CRASH_LOOP
    await h.wait_event("crasher", EventType.CRASH_LOOP)


async def test_crash_loop_rearms_when_the_window_slides_injected_clock(
    runtime: RuntimeUnderTest,
) -> None:
    clock = ManualClock()
    fleet = runtime.member(
        "member",
        "exit 1",
        **{
            "restart_policy.when": '"on_failure"',
            "restart_policy.crash": '{ window = "10m", allowed_crashes = 1 }',
            "restart_policy.backoff": '{ initial = "0s", max = "1s" }',
        },
    )
    h = await runtime.start_server(fleet, clock=clock, reconcile_interval="0s")
    await h.wait_event("member", EventType.CRASH_LOOP)
    result = await h.stub.ReconcileFleet(operator_pb2.ReconcileFleetRequest())
    assert [f.reason for f in result.failed] == ["CRASH_LOOP_DETECTED"]

    clock.advance(timedelta(minutes=10, seconds=1))
    result = await h.stub.ReconcileFleet(operator_pb2.ReconcileFleetRequest())

    assert (
        list(result.started_names) == ["member"]
        or result.failed[0].reason == "START_FAILED"
    )
    await h.wait_event("member", EventType.CRASH_LOOP_REARMED)


async def test_crash_loop_rearms_by_itself_in_real_time(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    await start(h, "brief", runtime.spec("exit 1", window="3s", allowed=1))

    looped = await h.wait_event("brief", EventType.CRASH_LOOP)
    rearmed = await h.wait_event("brief", EventType.CRASH_LOOP_REARMED, timeout=20)

    assert (rearmed.time - looped.time).total_seconds() >= 1.0
    await h.wait_event("brief", EventType.STARTING)


# -- rules 1 and 6: stops corral orders


async def test_stop_kills_a_workload_that_ignores_sigterm(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    container = await start(h, "stubborn", runtime.spec(STUBBORN, grace="500ms"))
    await eventually(lambda: runtime.sleeping(container), what="the trap set")

    began = time.monotonic()
    stopped = await h.stub.StopContainer(
        operator_pb2.StopContainerRequest(name="stubborn")
    )
    elapsed = time.monotonic() - began

    assert elapsed >= 0.5, elapsed
    assert stopped.container.state == State.CONTAINER_STATE_STOPPED
    assert stopped.container.desired_state == C.DesiredState.DESIRED_STATE_STOPPED
    assert (
        stopped.container.last_exit.reason
        == C.ExitReason.EXIT_REASON_STOPPED_BY_OPERATOR
    )
    assert len(stopped.container.crash_history) == 0
    assert stopped.container.restart_count == 0
    await eventually(
        lambda: _not(runtime.alive(container)), 10, "the whole workload gone"
    )


async def _not(check: Any) -> bool:
    return not await check


async def test_exit_code_after_sigterm_is_not_a_crash(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    container = await start(
        h, "polite", runtime.spec("trap 'exit 1' TERM; sleep 300 & wait")
    )
    await eventually(lambda: runtime.sleeping(container), what="the trap set")

    stopped = await h.stub.StopContainer(
        operator_pb2.StopContainerRequest(name="polite")
    )

    assert stopped.container.state == State.CONTAINER_STATE_STOPPED
    assert stopped.container.last_exit.exit_code == 1
    assert (
        stopped.container.last_exit.reason
        == C.ExitReason.EXIT_REASON_STOPPED_BY_OPERATOR
    )
    assert len(stopped.container.crash_history) == 0
    assert stopped.container.restart_count == 0


async def test_stop_cancels_a_pending_restart(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server()
    await start(h, "pending", runtime.spec("exit 1", initial="500ms"))
    await h.wait_event("pending", EventType.BACKOFF)

    stopped = await h.stub.StopContainer(
        operator_pb2.StopContainerRequest(name="pending")
    )
    assert stopped.container.state == State.CONTAINER_STATE_STOPPED
    stop_sequence = h.operator.hub.head

    # Well past the restart delay (a marker workload living 2 s shows it),
    # nothing started and nothing runs.
    await start(h, "marker", runtime.spec("sleep 2"))
    await h.wait_event("marker", EventType.EXITED, timeout=20)
    late = [
        e
        for e in h.operator.list_events(after=stop_sequence, limit=1000)
        if e.name == "pending"
    ]
    assert late == []
    container = await h.get("pending")
    assert container.state == State.CONTAINER_STATE_STOPPED
    assert container.instance_id == stopped.container.instance_id


# -- rules 1 and 8: replacements corral orders


async def test_restart_replaces_the_instance_without_a_crash(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    first = await start(h, "svc", runtime.spec(SLEEP))

    again = await h.stub.RestartContainer(
        operator_pb2.RestartContainerRequest(name="svc")
    )

    assert again.container.state == State.CONTAINER_STATE_RUNNING
    assert again.container.instance_id != first.instance_id
    assert len(again.container.crash_history) == 0
    assert again.container.restart_count == 0
    await eventually(lambda: _not(runtime.alive(first)), 10, "the old instance gone")
    assert await runtime.alive(again.container)


async def test_changed_spec_replaces_the_instance_without_a_crash(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server()
    first = await start(h, "svc", runtime.spec(SLEEP, env={"VERSION": "1"}))

    second = await start(h, "svc", runtime.spec(SLEEP, env={"VERSION": "2"}))

    assert second.instance_id != first.instance_id
    assert second.spec.env["VERSION"] == "2"
    assert second.state == State.CONTAINER_STATE_RUNNING
    assert len(second.crash_history) == 0
    stopped = await h.wait_event("svc", EventType.STOPPED, after=0)
    assert stopped.exit is not None and stopped.exit.reason is ExitReason.REPLACED
    assert not await runtime.alive(first)

    # The same spec again is a no-op.
    third = await start(h, "svc", runtime.spec(SLEEP, env={"VERSION": "2"}))
    assert third.instance_id == second.instance_id


async def test_request_id_makes_a_retry_a_no_op(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server()
    first = await start(h, "idem", runtime.spec(SLEEP), request_id="r-1")
    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="idem"))

    retried = await start(h, "idem", runtime.spec(SLEEP), request_id="r-1")

    assert retried.instance_id == first.instance_id
    assert retried.state == State.CONTAINER_STATE_STOPPED


# -- the min replica set, ad-hoc containers, deletion, rule 7: reconciliation


def _fleet(runtime: RuntimeUnderTest) -> str:
    return runtime.member("web", SLEEP) + runtime.member("worker", SLEEP)


async def test_members_start_and_cannot_be_deleted(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server(_fleet(runtime), reconcile_interval="0s")

    for name in ("web", "worker"):
        container = await h.get(name)
        assert container.state == State.CONTAINER_STATE_RUNNING
        assert container.min_replica_set
        assert await runtime.alive(container)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.DeleteContainer(operator_pb2.DeleteContainerRequest(name="web"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused.value)[0] == "MIN_REPLICA_SET_CONTAINER"


async def test_reconcile_counts_running_stopped_and_started(
    runtime: RuntimeUnderTest,
) -> None:
    h = await runtime.start_server(_fleet(runtime), reconcile_interval="0s")
    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="worker"))

    result = await h.stub.ReconcileFleet(operator_pb2.ReconcileFleetRequest())

    assert result.already_running == 1
    assert list(result.skipped_names) == ["worker"]
    assert result.started == 0
    assert list(result.failed) == []


async def test_ad_hoc_containers_can_be_refused(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server(_fleet(runtime), allow_ad_hoc_containers=False)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await start(h, "stray", runtime.spec(SLEEP))

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused.value)[0] == "AD_HOC_CONTAINER_NOT_ALLOWED"
    listing = await h.stub.ListContainers(operator_pb2.ListContainersRequest())
    assert [c.name for c in listing.containers] == ["web", "worker"]


async def test_delete_needs_a_stopped_container(runtime: RuntimeUnderTest) -> None:
    h = await runtime.start_server()
    await start(h, "temp", runtime.spec(SLEEP))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.DeleteContainer(operator_pb2.DeleteContainerRequest(name="temp"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused.value)[0] == "CONTAINER_NOT_STOPPED"

    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="temp"))
    await h.stub.DeleteContainer(operator_pb2.DeleteContainerRequest(name="temp"))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await h.get("temp")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


# -- docker only: exit classification and labels


@pytest.mark.docker
async def test_oom_kill_a_kill_by_someone_and_a_stop_are_told_apart(
    docker_runtime: RuntimeUnderTest,
) -> None:
    runtime = docker_runtime
    h = await runtime.start_server()
    hog = runtime.spec("/bin/memhog", memory="32m", when="never")
    killed = await start(h, "killed", runtime.spec(SLEEP, when="never"))
    await start(h, "stopped", runtime.spec(SLEEP, when="never"))

    await start(h, "hog", hog)
    await runtime.kill(killed, signal.SIGKILL)
    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="stopped"))

    await h.wait_event("hog", EventType.EXITED, after=0)
    await h.wait_event("killed", EventType.EXITED, after=0)
    reasons = {
        name: (await h.get(name)).last_exit for name in ("hog", "killed", "stopped")
    }
    assert reasons["hog"].reason == C.ExitReason.EXIT_REASON_OOM_KILLED
    assert reasons["killed"].reason == C.ExitReason.EXIT_REASON_SIGNALED
    assert reasons["killed"].signal == signal.SIGKILL
    assert reasons["stopped"].reason == C.ExitReason.EXIT_REASON_STOPPED_BY_OPERATOR
    assert [len((await h.get(n)).crash_history) for n in ("hog", "stopped")] == [1, 0]


@pytest.mark.docker
async def test_containers_carry_the_name_and_instance_labels(
    docker_runtime: RuntimeUnderTest,
) -> None:
    runtime = docker_runtime
    assert runtime.docker is not None
    h = await runtime.start_server()
    container = await start(h, "labelled", runtime.spec(SLEEP))

    info = await runtime.docker.containers.container(container.runtime_id).show()

    labels = info["Config"]["Labels"]
    assert labels[LABEL_NAME] == "labelled"
    assert labels[LABEL_INSTANCE] == container.instance_id
    assert labels[TEST_LABEL] == runtime.label
    assert info["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")


@pytest.mark.docker
async def test_ports_and_limits_reach_the_container_through_the_api(
    docker_runtime: RuntimeUnderTest,
) -> None:
    runtime = docker_runtime
    assert runtime.docker is not None
    h = await runtime.start_server()
    spec = runtime.spec(SLEEP, memory="64m")
    spec.cpus = 0.5
    spec.ports.append("127.0.0.1::8080")

    container = await start(h, "limited", spec)

    assert list(container.spec.ports) == ["127.0.0.1::8080"]
    assert (container.spec.memory, container.spec.cpus) == ("64m", 0.5)
    info = await runtime.docker.containers.container(container.runtime_id).show()
    host = info["HostConfig"]
    assert host["Memory"] == 64 * 2**20
    assert host["NanoCpus"] == 500_000_000
    # The ports are published by the network sandbox the instance joined.
    sandbox_id = host["NetworkMode"].removeprefix("container:")
    sandbox = await runtime.docker.containers.container(sandbox_id).show()
    assert sandbox["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]
    }
