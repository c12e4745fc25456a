"""Adversarial tests: races and state-machine holes in the operator and the
process runtime, against a real server, real processes and real SQLite."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

import grpc

from corral.core.model import EventType
from corral.v1 import container_pb2, lifecycle_pb2, operator_pb2
from tests.harness import Harness, ServerFactory, eventually, workload_pids
from tests.test_events import auth, lifecycle, report, workload_env
from tests.test_operator import SLEEP, spec, start

C = container_pb2
State = container_pb2.ContainerState
PY = sys.executable
STUBBORN = ("sh", "-c", "trap '' TERM; sleep 300 & wait")


def instance_pids(address: str, instance_id: str) -> list[int]:
    """Live workload processes started for one instance."""
    marker = f"CORRAL_INSTANCE_ID={instance_id}".encode()
    found = []
    for pid in workload_pids({address}):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            found.append(pid)
    return found


def sleeping(address: str, instance_id: str) -> bool:
    """True once the instance's shell reached its ``sleep`` (traps installed)."""
    for pid in instance_pids(address, instance_id):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                return True
        except OSError:
            continue
    return False


def member(name: str, command: tuple[str, ...] | list[str], **fields: str) -> str:
    """A ``[[containers]]`` table for a fleet file."""
    lines = [
        "[[containers]]",
        f"name = {json.dumps(name)}",
        f"command = {json.dumps(list(command))}",
        *(f"{key} = {json.dumps(value)}" for key, value in fields.items()),
    ]
    return "\n".join(lines) + "\n\n"


async def answered(call: Awaitable[object]) -> object:
    """Awaits an RPC; a refusal is fine, an internal error is not."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        assert error.code() not in (
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.UNKNOWN,
        ), error
        return error.code()


def assert_consistent(h: Harness) -> None:
    """Memory matches the store; the log is gap-free and its last event about
    each container shows the container's state and instance."""
    store = h.server.store
    stored = {record.name: record for record in store.load_containers()}
    assert stored == h.operator._records
    events = store.list_events(after=0, limit=1_000_000)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    last = {e.name: e for e in events if e.type is not EventType.REPORTED}
    for name, record in stored.items():
        assert last[name].state is record.state, (last[name], record)
        assert last[name].instance_id == record.instance_id, (last[name], record)


# -- bugs found


async def test_stop_with_zero_grace_answers_the_stop_not_an_internal_error(
    servers: ServerFactory,
) -> None:
    """The exit may be handled (its pidfd closed) while a zero grace period
    times out; the runtime then must not SIGKILL through the closed pidfd."""
    h = await servers.start()
    for _ in range(30):
        await start(h, "z", spec("sleep", "300"))
        reply = await h.stub.StopContainer(
            operator_pb2.StopContainerRequest(name="z", grace_period="0s")
        )
        assert reply.container.state == State.CONTAINER_STATE_STOPPED
        reason = reply.container.last_exit.reason
        assert reason == C.ExitReason.EXIT_REASON_STOPPED_BY_OPERATOR
    assert workload_pids({h.address}) == []


async def test_a_replaced_instance_is_stopped_the_way_its_own_spec_says(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """Rule 8: a changed spec stops the old instance with the old spec's stop
    signal and grace period, not the new spec's."""
    h = await servers.start()
    marker = tmp_path / "usr1"
    old = spec(
        "sh",
        "-c",
        f"trap 'touch {marker}; exit 0' USR1; trap '' TERM; sleep 300 & wait",
    )
    old.stop_signal = "SIGUSR1"
    old.stop_grace_period = "20s"
    first = await start(h, "svc", old)
    await eventually(lambda: sleeping(h.address, first.instance_id))

    began = time.monotonic()
    replaced = await start(h, "svc", spec(*SLEEP))
    assert time.monotonic() - began < 5
    assert marker.exists()
    assert replaced.instance_id != first.instance_id
    assert replaced.state == State.CONTAINER_STATE_RUNNING


async def test_a_member_whose_spec_changed_while_corral_was_down_is_replaced(
    servers: ServerFactory,
) -> None:
    old = [PY, "-c", "import time; time.sleep(300)"]
    new = [PY, "-c", "import time; time.sleep(301)"]
    first = await servers.start(member("web", old), reconcile_interval="0s")
    before = await first.get("web")
    assert before.state == State.CONTAINER_STATE_RUNNING
    await servers.stop(first)

    second = await servers.start(member("web", new), reconcile_interval="0s")
    after = await second.get("web")
    assert list(after.spec.command) == new
    assert after.instance_id != before.instance_id
    assert after.state == State.CONTAINER_STATE_RUNNING
    assert instance_pids(second.address, before.instance_id) == []
    assert len(instance_pids(second.address, after.instance_id)) == 1


async def test_a_stop_left_unfinished_does_not_hold_up_corrals_next_start(
    servers: ServerFactory,
) -> None:
    """A container recorded STOPPING is adopted and stopped in the background:
    its grace period does not delay serving."""
    first = await servers.start()
    container = await start(first, "stub", spec(*STUBBORN, grace="4s"))
    await eventually(lambda: sleeping(first.address, container.instance_id))
    stopping = asyncio.ensure_future(
        first.stub.StopContainer(operator_pb2.StopContainerRequest(name="stub"))
    )
    await first.wait_event("stub", EventType.STOPPING)
    await servers.stop(first)  # The stop never finishes.
    stopping.cancel()

    began = time.monotonic()
    second = await servers.start()
    assert time.monotonic() - began < 3
    assert instance_pids(first.address, container.instance_id)
    await second.wait_event("stub", EventType.STOPPED, timeout=15)
    assert (await second.get("stub")).state == State.CONTAINER_STATE_STOPPED
    assert instance_pids(first.address, container.instance_id) == []


async def test_reports_from_different_instances_may_share_an_event_id(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """event_id makes one instance's retries idempotent; another workload
    (or the next instance) choosing the same id is not a retry."""
    h = await servers.start()
    one = await workload_env(h, "one", tmp_path)
    two = await workload_env(h, "two", tmp_path)
    kind = lifecycle_pb2.REPORT_TYPE_STARTED

    first = await lifecycle(h).ReportEvent(
        report(one, kind, "ready"), metadata=auth(one["CORRAL_TOKEN"])
    )
    second = await lifecycle(h).ReportEvent(
        report(two, kind, "ready"), metadata=auth(two["CORRAL_TOKEN"])
    )
    assert not first.duplicate and not second.duplicate
    assert second.sequence != first.sequence
    assert (await h.get("two")).ready

    retry = await lifecycle(h).ReportEvent(
        report(two, kind, "ready"), metadata=auth(two["CORRAL_TOKEN"])
    )
    assert retry.duplicate and retry.sequence == second.sequence


# -- races that held up, kept as regression tests


async def test_stop_racing_zero_delay_restarts_leaves_nothing_running(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    hot = spec("true", when="always", allowed=100, window="1s")
    await start(h, "hot", hot)
    for _ in range(25):
        await h.wait_event("hot", EventType.EXITED)
        reply = await h.stub.StopContainer(
            operator_pb2.StopContainerRequest(name="hot")
        )
        assert reply.container.state == State.CONTAINER_STATE_STOPPED
        await asyncio.sleep(0.02)  # Proves an absence: no restart follows.
        assert workload_pids({h.address}) == []
        assert (await h.get("hot")).state == State.CONTAINER_STATE_STOPPED
        # A hundred crashes a second may trip the breaker: force past it.
        await start(h, "hot", hot, force=True)
    assert_consistent(h)


def random_call(
    h: Harness, rnd: random.Random, name: str, specs: list[C.ContainerSpec]
) -> Awaitable[object]:
    """One of the calls that change a container, picked at random."""
    rq = operator_pb2
    pick = rnd.randrange(7)
    if pick == 0:
        request = rq.StartContainerRequest(name=name, spec=rnd.choice(specs))
        return h.stub.StartContainer(request)
    if pick == 1:
        return h.stub.StartContainer(rq.StartContainerRequest(name=name, force=True))
    if pick == 2:
        grace = rnd.choice(["0s", "1s"])
        request = rq.StopContainerRequest(name=name, grace_period=grace)
        return h.stub.StopContainer(request)
    if pick == 3:
        return h.stub.RestartContainer(rq.RestartContainerRequest(name=name))
    if pick == 4:
        return h.stub.DeleteContainer(rq.DeleteContainerRequest(name=name))
    if pick == 5:
        return h.stub.ClearCrashHistory(rq.ClearCrashHistoryRequest(name=name))
    return h.stub.ReconcileFleet(rq.ReconcileFleetRequest())


async def test_concurrent_calls_on_the_same_names_stay_consistent(
    servers: ServerFactory,
) -> None:
    rnd = random.Random(7)
    h = await servers.start()
    specs = [
        spec(*SLEEP, when="always", allowed=100),
        spec(PY, "-c", "import time; time.sleep(0.02)", when="always", allowed=100),
        spec("false", allowed=3, window="1m"),
    ]
    names = ["x", "y"]
    for _ in range(25):
        calls = [random_call(h, rnd, rnd.choice(names), specs) for _ in range(10)]
        await asyncio.gather(*(answered(call) for call in calls))
        await asyncio.sleep(rnd.choice([0, 0.01, 0.05]))

    for name in names:
        request = operator_pb2.StopContainerRequest(name=name)
        await answered(h.stub.StopContainer(request))
    await asyncio.sleep(0.2)  # Proves an absence: nothing starts again.
    assert workload_pids({h.address}) == []
    for record in h.operator.list_containers():
        assert record.state.value == "STOPPED", record
    assert_consistent(h)
