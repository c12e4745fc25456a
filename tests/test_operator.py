"""The operator's API end to end with the process runtime: real server, real
processes, real SQLite file. The workload environment, paging, and refusals of
bad input live here; the restart semantics (DESIGN.md rules 1 to 8) run
against both runtimes in ``test_semantics.py``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from corral.core import operator as operator_module
from corral.core.model import EventType
from corral.v1 import container_pb2, operator_pb2
from tests.harness import Harness, ServerFactory, error_info, eventually, pid_alive

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

    # Ports and limits are the docker runtime's; the process runtime refuses them.
    for field, value in [("memory", "64m"), ("cpus", 1.0)]:
        limited = C.ContainerSpec()
        limited.CopyFrom(good)
        setattr(limited, field, value)
        cases.append((f"{field} under process", limited, f"spec.{field}"))
    published = C.ContainerSpec()
    published.CopyFrom(good)
    published.ports.append("8080:80")
    cases.append(("ports under process", published, "spec.ports"))
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


async def test_a_start_refused_by_the_breaker_changes_nothing(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    await start(h, "crasher", spec(*py("raise SystemExit(1)"), allowed=1))
    await h.wait_event("crasher", EventType.CRASH_LOOP)
    before = await h.get("crasher")
    head = h.operator.hub.head

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await start(h, "crasher", spec(*SLEEP, allowed=1))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    after = await h.get("crasher")
    assert after.spec == before.spec
    assert h.operator.hub.head == head


# -- stops the runtime does not carry out


class FakeFirstStopHangs:
    """A fault: the first stop never returns, like a runtime whose engine
    stopped answering; everything else is the real process runtime."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self.stops = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    async def stop(self, *args: Any) -> None:
        self.stops += 1
        if self.stops == 1:
            await asyncio.Event().wait()
        await self._runtime.stop(*args)


async def test_a_restart_whose_stop_times_out_is_finished_by_a_retry(
    servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operator_module, "_STOP_MARGIN", 0.3)
    h = await servers.start(wrap_runtime=FakeFirstStopHangs)
    before = await start(h, "svc", spec(*SLEEP, grace="0s"))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.RestartContainer(
            operator_pb2.RestartContainerRequest(name="svc"), timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "did not confirm the stop" in (refused.value.details() or "")
    assert pid_alive(int(before.runtime_id))

    async def restarted() -> bool:
        now = await h.get("svc")
        return (
            now.state == State.CONTAINER_STATE_RUNNING
            and now.instance_id != before.instance_id
        )

    await eventually(restarted, what="the retry stops the old instance and starts one")
    after = await h.get("svc")
    assert not pid_alive(int(before.runtime_id))
    assert pid_alive(int(after.runtime_id))
    assert list(after.crash_history) == []  # An ordered stop, never a crash.


async def test_a_stop_whose_confirmation_times_out_is_not_restarted_by_the_retry(
    servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operator_module, "_STOP_MARGIN", 0.3)
    h = await servers.start(wrap_runtime=FakeFirstStopHangs)
    before = await start(h, "svc", spec(*SLEEP, when="always", grace="0s"))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.StopContainer(
            operator_pb2.StopContainerRequest(name="svc"), timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    async def stopped() -> bool:
        return (await h.get("svc")).state == State.CONTAINER_STATE_STOPPED

    await eventually(stopped, what="the retry carries out the stop")
    assert not pid_alive(int(before.runtime_id))
    # Nothing starts it again: the retry only finishes what was asked.
    await h.operator.reconcile()
    stopped_record = await h.get("svc")
    assert stopped_record.state == State.CONTAINER_STATE_STOPPED
    assert stopped_record.instance_id == before.instance_id
