"""ReportEvent and WatchEvents on a real server with real workloads."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from corral.core.model import EventType
from corral.v1 import (
    container_pb2,
    event_pb2,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    operator_pb2,
)
from tests.harness import Harness, ServerFactory, error_info, eventually
from tests.test_operator import spec

ENV_DUMP = (
    "import os, json, sys, time\n"
    "open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))\n"
    "time.sleep(300)"
)


async def workload_env(h: Harness, name: str, tmp_path: Path) -> dict[str, str]:
    """Starts a workload that writes out its environment, and reads it."""
    out = tmp_path / f"{name}.env.json"
    await h.stub.StartContainer(
        operator_pb2.StartContainerRequest(
            name=name, spec=spec(sys.executable, "-c", ENV_DUMP, str(out))
        )
    )
    text = await eventually(lambda: out.exists() and out.read_text())
    env: dict[str, str] = json.loads(text)
    return env


def lifecycle(h: Harness) -> lifecycle_pb2_grpc.LifecycleServiceStub:
    return lifecycle_pb2_grpc.LifecycleServiceStub(h.channel)


def report(
    env: dict[str, str],
    kind: int,
    event_id: str,
    **fields: object,
) -> lifecycle_pb2.ReportEventRequest:
    values: dict[str, object] = {
        "name": env["CONTAINER_NAME"],
        "instance_id": env["CORRAL_INSTANCE_ID"],
        "event_id": event_id,
        "type": kind,
        **fields,
    }
    return lifecycle_pb2.ReportEventRequest(**values)  # type: ignore[arg-type]


def auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_started_report_marks_ready_and_retries_are_idempotent(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    env = await workload_env(h, "svc", tmp_path)
    assert not (await h.get("svc")).ready

    request = report(env, lifecycle_pb2.REPORT_TYPE_STARTED, "e-1")
    first = await lifecycle(h).ReportEvent(request, metadata=auth(env["CORRAL_TOKEN"]))
    again = await lifecycle(h).ReportEvent(request, metadata=auth(env["CORRAL_TOKEN"]))
    assert not first.duplicate and again.duplicate
    assert again.sequence == first.sequence
    assert (await h.get("svc")).ready

    ready = [e for e in h.operator.list_events(after=0, limit=1000) if e.name == "svc"]
    assert [e.type for e in ready].count(EventType.READY) == 1


async def test_report_needs_the_instance_token(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    env = await workload_env(h, "one", tmp_path)
    other = await workload_env(h, "two", tmp_path)
    head = h.operator.hub.head
    request = report(env, lifecycle_pb2.REPORT_TYPE_STARTED, "e-2")

    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        (auth("not-a-token"), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", env["CORRAL_TOKEN"]),), grpc.StatusCode.UNAUTHENTICATED),
        (auth(other["CORRAL_TOKEN"]), grpc.StatusCode.PERMISSION_DENIED),
    ]
    for metadata, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lifecycle(h).ReportEvent(request, metadata=metadata)
        assert refused.value.code() == code, metadata
    assert h.operator.hub.head == head
    assert not (await h.get("one")).ready


async def test_report_about_an_old_instance_changes_nothing(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    env = await workload_env(h, "svc", tmp_path)
    await h.stub.RestartContainer(operator_pb2.RestartContainerRequest(name="svc"))

    stale = report(env, lifecycle_pb2.REPORT_TYPE_ERROR, "e-3", message="old")
    reply = await lifecycle(h).ReportEvent(stale, metadata=auth(env["CORRAL_TOKEN"]))
    assert reply.sequence > 0
    event = h.operator.list_events(after=reply.sequence - 1, limit=1)[0]
    assert event.type is EventType.REPORTED
    assert "no longer current" in event.message
    container = await h.get("svc")
    assert container.instance_id != env["CORRAL_INSTANCE_ID"]
    assert container.state == container_pb2.CONTAINER_STATE_RUNNING


async def test_error_report_becomes_the_cause_of_the_exit(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    env = await workload_env(h, "svc", tmp_path)
    request = report(
        env,
        lifecycle_pb2.REPORT_TYPE_ERROR,
        "e-4",
        message="db down",
        retry_after="300ms",
    )
    await lifecycle(h).ReportEvent(request, metadata=auth(env["CORRAL_TOKEN"]))

    # The workload then dies; the reported error is the cause.
    pid = int((await h.get("svc")).runtime_id)
    os.killpg(pid, signal.SIGKILL)
    exited = await h.wait_event("svc", EventType.EXITED)
    assert exited.exit is not None
    assert exited.exit.reason.value == "WORKLOAD_ERROR"
    assert exited.exit.message == "db down"
    backoff = await h.wait_event("svc", EventType.BACKOFF)
    assert backoff.message == "restarting in 300ms"


async def test_bad_reports_are_invalid_arguments(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    env = await workload_env(h, "svc", tmp_path)
    token = auth(env["CORRAL_TOKEN"])
    for fields, field in [
        ({"event_id": ""}, "event_id"),
        ({"type": lifecycle_pb2.REPORT_TYPE_UNSPECIFIED}, "type"),
        ({"retry_after": "soon"}, "retry_after"),
        ({"message": "x" * 10_000}, "message"),
    ]:
        base = {
            "name": "svc",
            "instance_id": env["CORRAL_INSTANCE_ID"],
            "event_id": "e-5",
            "type": lifecycle_pb2.REPORT_TYPE_STARTED,
            **fields,
        }
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lifecycle(h).ReportEvent(
                lifecycle_pb2.ReportEventRequest(**base),  # type: ignore[arg-type]
                metadata=token,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(refused.value)[1] == [field]


# -- WatchEvents ----------------------------------------------------------------


async def collect(
    h: Harness, after: int, count: int, **filters: object
) -> list[event_pb2.Event]:
    """Reads ``count`` events from a fresh WatchEvents stream."""
    request = operator_pb2.WatchEventsRequest(after_sequence=after, **filters)  # type: ignore[arg-type]
    stream = h.stub.WatchEvents(request)
    events: list[event_pb2.Event] = []
    async for item in stream:
        if item.HasField("event"):
            events.append(item.event)
            if len(events) == count:
                break
    stream.cancel()
    return events


async def test_watch_replays_then_follows_live_in_log_order(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    for index in range(3):
        await h.stub.StartContainer(
            operator_pb2.StartContainerRequest(
                name=f"w{index}",
                spec=spec(sys.executable, "-c", "import time; time.sleep(300)"),
            )
        )
    head = h.operator.hub.head
    replay = await collect(h, 0, head)
    assert [e.sequence for e in replay] == list(range(1, head + 1))

    live = asyncio.create_task(collect(h, head, 2))
    await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="w0"))
    events = await asyncio.wait_for(live, 10)
    assert [e.sequence for e in events] == [head + 1, head + 2]
    assert [e.type for e in events] == [
        event_pb2.EVENT_TYPE_STOPPING,
        event_pb2.EVENT_TYPE_STOPPED,
    ]


async def test_watch_filters_by_name_and_type(servers: ServerFactory) -> None:
    h = await servers.start()
    for name in ("a", "b"):
        await h.stub.StartContainer(
            operator_pb2.StartContainerRequest(
                name=name,
                spec=spec(sys.executable, "-c", "import time; time.sleep(300)"),
            )
        )
    events = await collect(h, 0, 1, names=["b"], types=[event_pb2.EVENT_TYPE_RUNNING])
    assert [(e.name, e.type) for e in events] == [("b", event_pb2.EVENT_TYPE_RUNNING)]


async def test_watch_sends_heartbeats_with_the_head(servers: ServerFactory) -> None:
    h = await servers.start()
    stream = h.stub.WatchEvents(operator_pb2.WatchEventsRequest())
    async for item in stream:
        assert item.HasField("heartbeat")
        assert item.heartbeat.head_sequence == h.operator.hub.head
        break
    stream.cancel()


async def test_watch_refuses_cursors_outside_the_log(servers: ServerFactory) -> None:
    h = await servers.start()
    head = h.operator.hub.head
    for cursor in (head + 5, -1):
        stream = h.stub.WatchEvents(
            operator_pb2.WatchEventsRequest(after_sequence=cursor)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stream:
                pass
        assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "head" in (refused.value.details() or "")


async def test_watch_refuses_an_expired_cursor(servers: ServerFactory) -> None:
    h = await servers.start(event_retention_count=2)
    for index in range(3):
        await h.stub.StartContainer(
            operator_pb2.StartContainerRequest(
                name=f"p{index}", spec=spec(sys.executable, "-c", "pass")
            )
        )
    await eventually(lambda: h.operator.hub.head >= 9)
    h.server.store.prune_events(keep=2, older_than=datetime.now(UTC))
    oldest = h.operator.oldest_sequence()
    assert oldest > 1
    stream = h.stub.WatchEvents(operator_pb2.WatchEventsRequest(after_sequence=0))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stream:
            pass
    assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert str(oldest) in (refused.value.details() or "")


async def test_watchers_are_capped(servers: ServerFactory) -> None:
    h = await servers.start(max_watchers=2)
    streams = [h.stub.WatchEvents(operator_pb2.WatchEventsRequest()) for _ in range(2)]
    for stream in streams:
        await stream.read()  # a heartbeat: the stream is registered
    third = h.stub.WatchEvents(operator_pb2.WatchEventsRequest())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await third.read()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for stream in streams:
        stream.cancel()


async def test_shutdown_ends_streams_with_unavailable(servers: ServerFactory) -> None:
    h = await servers.start()
    stream = h.stub.WatchEvents(operator_pb2.WatchEventsRequest())
    await stream.read()
    stopping = asyncio.create_task(h.server.stop(grace=2))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        while True:
            await stream.read()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    await stopping
