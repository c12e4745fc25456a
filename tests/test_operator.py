"""The restart semantics of DESIGN.md, end to end: real server, real processes,
real SQLite file."""

from __future__ import annotations

import json
import signal
import sys
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from corral.core.clock import ManualClock
from corral.core.model import EventType
from corral.v1 import container_pb2, operator_pb2
from tests.harness import Harness, ServerFactory, eventually, pid_alive

PY = sys.executable
C = container_pb2
State = container_pb2.ContainerState


def spec(
    *command: str,
    when: str = "on_failure",
    initial: str = "0s",
    window: str = "1m",
    allowed: int = 3,
    env: dict[str, str] | None = None,
    grace: str = "",
    success: tuple[int, ...] = (),
) -> container_pb2.ContainerSpec:
    """A spec with zero restart delay unless told otherwise."""
    return C.ContainerSpec(
        command=list(command),
        env=env or {},
        stop_grace_period=grace,
        restart_policy=C.RestartPolicy(
            when=C.RestartWhen.Value(f"RESTART_WHEN_{when.upper()}"),
            crash=C.CrashPolicy(window=window, allowed_crashes=allowed),
            success_exit_codes=list(success),
            backoff=C.Backoff(initial=initial, max="1s" if initial == "0s" else "10s"),
        ),
    )


def py(code: str) -> tuple[str, ...]:
    return (PY, "-c", code)


SLEEP = py("import time; time.sleep(300)")


async def start(h: Harness, name: str, s: C.ContainerSpec, **kw: object) -> C.Container:
    reply = await h.stub.StartContainer(
        operator_pb2.StartContainerRequest(name=name, spec=s, **kw)  # type: ignore[arg-type]
    )
    return reply.container


def error_info(error: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    """The ErrorInfo reason and the BadRequest fields of a refused call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "status details are missing"
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


# -- starting and the environment


async def test_start_runs_a_process_with_the_designed_environment(
    servers: ServerFactory, tmp_path: Path
) -> None:
    out = tmp_path / "env.json"
    h = await servers.start(
        container_name_env_key="APP_NAME", environ={"TOKEN_SECRET": "s3cr3t-canary"}
    )
    code = (
        "import os, json, time\n"
        f"open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
        "time.sleep(300)"
    )
    container = await start(
        h, "envcheck", spec(*py(code), env={"KEY": "pre-${secret:TOKEN_SECRET}-post"})
    )
    assert container.state == State.CONTAINER_STATE_RUNNING
    assert pid_alive(int(container.runtime_id))

    env = await eventually(
        lambda: out.exists() and json.loads(out.read_text() or "null")
    )
    assert env["KEY"] == "pre-s3cr3t-canary-post"
    assert env["APP_NAME"] == "envcheck"
    assert env["CORRAL_INSTANCE_ID"] == container.instance_id
    assert env["CORRAL_ADDR"] == h.address
    assert len(env["CORRAL_TOKEN"]) >= 32
    # The secret is resolved only inside the workload, never in responses.
    assert "s3cr3t-canary" not in str(await h.get("envcheck"))


async def test_missing_command_fails_to_start_under_backoff(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    await start(h, "ghost", spec("/nonexistent/binary", initial="50ms", allowed=1))
    event = await h.wait_event("ghost", EventType.START_FAILED)
    assert event.exit is not None and "not found" in event.exit.message
    await h.wait_event("ghost", EventType.CRASH_LOOP)
    container = await h.get("ghost")
    assert container.state == State.CONTAINER_STATE_CRASH_LOOP
    assert container.last_exit.reason == C.ExitReason.EXIT_REASON_FAILED_TO_START
    assert len(container.crash_history) == 2


# -- rules 2 and 3: classification and policies


async def test_clean_exit_under_on_failure_is_not_restarted(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    await start(h, "oneshot", spec(*py("pass")))
    await h.wait_event("oneshot", EventType.EXITED)
    container = await h.get("oneshot")
    assert container.state == State.CONTAINER_STATE_EXITED
    assert container.restart_count == 0
    assert container.last_exit.exit_code == 0


async def test_listed_success_code_is_a_clean_exit(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(h, "tempfail", spec(*py("raise SystemExit(75)"), success=(75,)))
    await h.wait_event("tempfail", EventType.EXITED)
    container = await h.get("tempfail")
    assert container.state == State.CONTAINER_STATE_EXITED
    assert container.restart_count == 0


async def test_never_runs_once_even_after_a_failure(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(h, "once", spec(*py("raise SystemExit(3)"), when="never"))
    event = await h.wait_event("once", EventType.EXITED)
    assert event.exit is not None and event.exit.exit_code == 3
    container = await h.get("once")
    assert container.state == State.CONTAINER_STATE_EXITED
    assert container.restart_count == 0
    assert len(container.crash_history) == 1


async def test_always_restarts_a_clean_exit(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(h, "loop", spec(*py("pass"), when="always", allowed=20))
    await h.wait_event("loop", EventType.EXITED)
    await h.wait_event("loop", EventType.RUNNING)
    assert (await h.get("loop")).restart_count >= 1


async def test_failure_restarts_with_a_new_instance(servers: ServerFactory) -> None:
    h = await servers.start()
    first = await start(
        h, "flaky", spec(*py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    )
    exited = await h.wait_event("flaky", EventType.EXITED)
    assert exited.exit is not None and exited.exit.signal == signal.SIGKILL
    await h.wait_event("flaky", EventType.STARTING)
    container = await h.get("flaky")
    assert container.instance_id != first.instance_id
    assert container.restart_count >= 1
    assert container.crash_history[0].reason == C.ExitReason.EXIT_REASON_SIGNALED


async def test_backoff_waits_before_restarting(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(h, "slow", spec(*py("raise SystemExit(1)"), initial="400ms", allowed=5))
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
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    await start(h, "crasher", spec(*py("raise SystemExit(1)"), allowed=2))
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


async def test_force_starts_a_crash_looping_container(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(h, "crasher", spec(*py("raise SystemExit(1)"), allowed=0))
    await h.wait_event("crasher", EventType.CRASH_LOOP)
    forced = await h.stub.StartContainer(
        operator_pb2.StartContainerRequest(name="crasher", force=True)
    )
    assert forced.container.state != State.CONTAINER_STATE_CRASH_LOOP
    await h.wait_event("crasher", EventType.CRASH_LOOP)


async def test_crash_loop_rearms_when_the_window_slides_injected_clock(
    servers: ServerFactory,
) -> None:
    clock = ManualClock()
    fleet = f"""
[[containers]]
name = "member"
command = {json.dumps(list(py("raise SystemExit(1)")))}
restart_policy.when = "on_failure"
restart_policy.crash = {{ window = "10m", allowed_crashes = 1 }}
restart_policy.backoff = {{ initial = "0s", max = "1s" }}
"""
    h = await servers.start(fleet, clock=clock, reconcile_interval="0s")
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


async def test_crash_loop_rearms_by_itself_in_real_time(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(
        h, "brief", spec(*py("raise SystemExit(1)"), window="1500ms", allowed=1)
    )
    looped = await h.wait_event("brief", EventType.CRASH_LOOP)
    rearmed = await h.wait_event("brief", EventType.CRASH_LOOP_REARMED, timeout=20)
    assert (rearmed.time - looped.time).total_seconds() >= 1.0
    await h.wait_event("brief", EventType.STARTING)


# -- rules 1 and 6: stops corral orders

STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = os.fork()
if child == 0:
    time.sleep(300)
    os._exit(0)
open(sys.argv[1], "w").write(str(child))
time.sleep(300)
"""


async def test_stop_kills_a_group_that_ignores_sigterm(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    pidfile = tmp_path / "child.pid"
    container = await start(
        h, "stubborn", spec(PY, "-c", STUBBORN, str(pidfile), grace="500ms")
    )
    child = int(await eventually(lambda: pidfile.exists() and pidfile.read_text()))
    leader = int(container.runtime_id)
    assert pid_alive(child) and pid_alive(leader)

    stopped = await h.stub.StopContainer(
        operator_pb2.StopContainerRequest(name="stubborn")
    )
    assert stopped.container.state == State.CONTAINER_STATE_STOPPED
    assert stopped.container.desired_state == C.DesiredState.DESIRED_STATE_STOPPED
    assert (
        stopped.container.last_exit.reason
        == C.ExitReason.EXIT_REASON_STOPPED_BY_OPERATOR
    )
    assert len(stopped.container.crash_history) == 0
    await eventually(
        lambda: not pid_alive(child) and not pid_alive(leader), 10, "group gone"
    )


async def test_exit_code_after_sigterm_is_not_a_crash(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    ready = tmp_path / "ready"
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(300)"
    )
    await start(h, "polite", spec(*py(code)))
    await eventually(ready.exists, what="the handler installed")
    stopped = await h.stub.StopContainer(
        operator_pb2.StopContainerRequest(name="polite")
    )
    assert stopped.container.state == State.CONTAINER_STATE_STOPPED
    assert stopped.container.last_exit.exit_code == 1
    assert len(stopped.container.crash_history) == 0
    assert stopped.container.restart_count == 0


async def test_stop_cancels_a_pending_restart(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(h, "pending", spec(*py("raise SystemExit(1)"), initial="500ms"))
    await h.wait_event("pending", EventType.BACKOFF)
    stopped = await h.stub.StopContainer(
        operator_pb2.StopContainerRequest(name="pending")
    )
    assert stopped.container.state == State.CONTAINER_STATE_STOPPED
    stop_sequence = h.operator.hub.head

    # Well past the restart delay (a marker workload living 1.5 s shows it),
    # nothing started and nothing runs.
    await start(h, "marker", spec(*py("import time; time.sleep(1.5)")))
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


async def test_restart_replaces_the_instance_without_a_crash(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    first = await start(h, "svc", spec(*SLEEP))
    again = await h.stub.RestartContainer(
        operator_pb2.RestartContainerRequest(name="svc")
    )
    assert again.container.state == State.CONTAINER_STATE_RUNNING
    assert again.container.instance_id != first.instance_id
    assert len(again.container.crash_history) == 0
    await eventually(lambda: not pid_alive(int(first.runtime_id)), 10, "old pid gone")


async def test_changed_spec_replaces_the_instance_without_a_crash(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    first = await start(h, "svc", spec(*SLEEP, env={"VERSION": "1"}))
    second = await start(h, "svc", spec(*SLEEP, env={"VERSION": "2"}))
    assert second.instance_id != first.instance_id
    assert second.spec.env["VERSION"] == "2"
    assert second.state == State.CONTAINER_STATE_RUNNING
    assert len(second.crash_history) == 0
    stopped = await h.wait_event("svc", EventType.STOPPED, after=0)
    assert stopped.exit is not None and stopped.exit.reason.value == "REPLACED"
    assert not pid_alive(int(first.runtime_id))

    # The same spec again is a no-op.
    third = await start(h, "svc", spec(*SLEEP, env={"VERSION": "2"}))
    assert third.instance_id == second.instance_id


async def test_request_id_makes_a_retry_a_no_op(servers: ServerFactory) -> None:
    h = await servers.start()
    first = await start(h, "idem", spec(*SLEEP), request_id="r-1")
    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="idem"))
    retried = await start(h, "idem", spec(*SLEEP), request_id="r-1")
    assert retried.instance_id == first.instance_id
    assert retried.state == State.CONTAINER_STATE_STOPPED


# -- min replica set, ad-hoc containers, deletion, reconciliation


FLEET = f"""
[[containers]]
name = "web"
command = {json.dumps(list(SLEEP))}

[[containers]]
name = "worker"
command = {json.dumps(list(SLEEP))}
"""


async def test_members_start_and_cannot_be_deleted(servers: ServerFactory) -> None:
    h = await servers.start(FLEET, reconcile_interval="0s")
    for name in ("web", "worker"):
        container = await h.get(name)
        assert container.state == State.CONTAINER_STATE_RUNNING
        assert container.min_replica_set
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.DeleteContainer(operator_pb2.DeleteContainerRequest(name="web"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused.value)[0] == "MIN_REPLICA_SET_CONTAINER"


async def test_reconcile_counts_running_stopped_and_started(
    servers: ServerFactory,
) -> None:
    h = await servers.start(FLEET, reconcile_interval="0s")
    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="worker"))
    result = await h.stub.ReconcileFleet(operator_pb2.ReconcileFleetRequest())
    assert result.already_running == 1
    assert list(result.skipped_names) == ["worker"]
    assert result.started == 0


async def test_ad_hoc_containers_can_be_refused(servers: ServerFactory) -> None:
    h = await servers.start(FLEET, allow_ad_hoc_containers=False)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await start(h, "stray", spec(*SLEEP))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused.value)[0] == "AD_HOC_CONTAINER_NOT_ALLOWED"
    listing = await h.stub.ListContainers(operator_pb2.ListContainersRequest())
    assert [c.name for c in listing.containers] == ["web", "worker"]


async def test_delete_needs_a_stopped_container(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(h, "temp", spec(*SLEEP))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.DeleteContainer(operator_pb2.DeleteContainerRequest(name="temp"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused.value)[0] == "CONTAINER_NOT_STOPPED"

    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="temp"))
    await h.stub.DeleteContainer(operator_pb2.DeleteContainerRequest(name="temp"))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await h.get("temp")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_pages_and_filters(servers: ServerFactory) -> None:
    h = await servers.start()
    for index in range(5):
        await start(h, f"c{index}", spec(*SLEEP))
    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="c3"))

    names, token = [], ""
    while True:
        page = await h.stub.ListContainers(
            operator_pb2.ListContainersRequest(page_size=2, page_token=token)
        )
        names += [c.name for c in page.containers]
        token = page.next_page_token
        if not token:
            break
    assert names == ["c0", "c1", "c2", "c3", "c4"]

    stopped = await h.stub.ListContainers(
        operator_pb2.ListContainersRequest(filter="state=STOPPED")
    )
    assert [c.name for c in stopped.containers] == ["c3"]


async def test_list_events_pages_through_a_gap_free_log(servers: ServerFactory) -> None:
    h = await servers.start()
    await start(h, "a", spec(*SLEEP))
    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="a"))
    sequences, token = [], ""
    while True:
        page = await h.stub.ListEvents(
            operator_pb2.ListEventsRequest(page_size=2, page_token=token)
        )
        sequences += [e.sequence for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert sequences == list(range(1, page.head_sequence + 1))
    assert page.head_sequence >= 4


# -- bad input: the right status, and nothing stored changes

BAD_NAMES = ["", "Upper", "x" * 64, "../x", "has space", "café", "-lead", "9lives"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_invalid_names_are_refused(servers: ServerFactory, name: str) -> None:
    h = await servers.start()
    for call in (
        h.stub.StartContainer(
            operator_pb2.StartContainerRequest(name=name, spec=spec(*SLEEP))
        ),
        h.stub.GetContainer(operator_pb2.GetContainerRequest(name=name)),
        h.stub.StopContainer(operator_pb2.StopContainerRequest(name=name)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(refused.value)[1] == ["name"]


def _bad_specs() -> list[tuple[str, C.ContainerSpec, str]]:
    good = spec(*SLEEP)
    cases = []

    empty = C.ContainerSpec()
    empty.CopyFrom(good)
    del empty.command[:]
    cases.append(("empty command", empty, "spec.command"))

    for field, value in [("window", "-5s"), ("window", "soon")]:
        bad = C.ContainerSpec()
        bad.CopyFrom(good)
        setattr(bad.restart_policy.crash, field, value)
        cases.append((f"crash window {value}", bad, "spec.restart_policy.crash.window"))

    negative = C.ContainerSpec()
    negative.CopyFrom(good)
    negative.restart_policy.crash.allowed_crashes = -1
    cases.append(
        ("allowed_crashes < 0", negative, "spec.restart_policy.crash.allowed_crashes")
    )

    grace = C.ContainerSpec()
    grace.CopyFrom(good)
    grace.stop_grace_period = "10"
    cases.append(("unitless grace", grace, "spec.stop_grace_period"))

    env_eq = C.ContainerSpec()
    env_eq.CopyFrom(good)
    env_eq.env["A=B"] = "x"
    cases.append(("env name with =", env_eq, "spec.env"))

    huge = C.ContainerSpec()
    huge.CopyFrom(good)
    for index in range(3):
        huge.env[f"BIG{index}"] = "x" * 400_000
    cases.append(("env over 1 MiB", huge, "spec.env"))
    return cases


@pytest.mark.parametrize(
    ("label", "bad", "field"),
    _bad_specs(),
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_invalid_specs_are_refused_and_change_nothing(
    servers: ServerFactory, label: str, bad: C.ContainerSpec, field: str
) -> None:
    h = await servers.start()
    before = await start(h, "keep", spec(*SLEEP))
    head = (await h.stub.ListEvents(operator_pb2.ListEventsRequest())).head_sequence

    for name in ("keep", "fresh"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await start(h, name, bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, label
        fields = error_info(refused.value)[1]
        assert any(f.startswith(field) for f in fields), (label, fields)

    after = await h.get("keep")
    assert after == before or (
        after.instance_id == before.instance_id and after.spec == before.spec
    )
    assert (
        await h.stub.ListEvents(operator_pb2.ListEventsRequest())
    ).head_sequence == head
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await h.get("fresh")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_names_are_not_found(servers: ServerFactory) -> None:
    h = await servers.start()
    calls = [
        h.stub.GetContainer(operator_pb2.GetContainerRequest(name="nobody")),
        h.stub.StopContainer(operator_pb2.StopContainerRequest(name="nobody")),
        h.stub.RestartContainer(operator_pb2.RestartContainerRequest(name="nobody")),
        h.stub.DeleteContainer(operator_pb2.DeleteContainerRequest(name="nobody")),
        h.stub.ClearCrashHistory(operator_pb2.ClearCrashHistoryRequest(name="nobody")),
        h.stub.StartContainer(operator_pb2.StartContainerRequest(name="nobody")),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(refused.value)[0] == "CONTAINER_NOT_FOUND"


async def test_bad_paging_arguments_are_refused(servers: ServerFactory) -> None:
    h = await servers.start()
    for request in (
        operator_pb2.ListContainersRequest(page_size=-1),
        operator_pb2.ListContainersRequest(page_token="%%%"),
        operator_pb2.ListContainersRequest(filter="colour=red"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await h.stub.ListContainers(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
