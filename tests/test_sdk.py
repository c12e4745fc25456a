"""The Python SDK's clients against a real corral server: every RPC has a
method, errors arrive typed, dict specs convert, and watches resume."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from corral.core.model import EventType
from corral.sdk import (
    AdHocContainerNotAllowedError,
    AsyncClient,
    Client,
    ContainerNotFoundError,
    ContainerNotStoppedError,
    CrashLoopDetectedError,
    CursorOutOfRangeError,
    InvalidArgumentError,
    MinReplicaSetContainerError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
    to_spec,
)
from corral.v1 import container_pb2, event_pb2, lifecycle_pb2, operator_pb2
from tests.harness import ServerFactory, eventually, free_port

PY = sys.executable
SLEEP = [PY, "-c", "import time; time.sleep(300)"]
State = container_pb2.ContainerState


def sleeper(**extra: Any) -> dict[str, Any]:
    """A fleet-file style spec of a workload that just sleeps."""
    return {"command": SLEEP, **extra}


def member(name: str) -> str:
    return f"[[containers]]\nname = {json.dumps(name)}\ncommand = {json.dumps(SLEEP)}\n"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# -- the surface


def test_every_rpc_has_a_method() -> None:
    for module, service in (
        (operator_pb2, "OperatorService"),
        (lifecycle_pb2, "LifecycleService"),
    ):
        for method in module.DESCRIPTOR.services_by_name[service].methods:
            for client in (Client, AsyncClient):
                assert callable(getattr(client, snake(method.name), None)), (
                    f"{client.__name__} has no method for {service}.{method.name}"
                )


def test_a_dict_spec_converts_with_the_fleet_files_keys() -> None:
    spec = to_spec(
        {
            "command": ["python3", "worker.py"],
            "env": {"LOG_LEVEL": "info"},
            "config": {"queue": "jobs", "concurrency": 4},
            "stop_signal": "SIGINT",
            "stop_grace_period": "5s",
            "labels": {"team": "web"},
            "restart_policy": {
                "when": "always",
                "success_exit_codes": [0, 75],
                "crash": {"window": "10m", "allowed_crashes": 0},
                "backoff": {"initial": "1s", "max": "60s", "multiplier": 2.0},
            },
        }
    )
    assert list(spec.command) == ["python3", "worker.py"]
    assert spec.config["concurrency"] == 4
    assert spec.restart_policy.when == container_pb2.RESTART_WHEN_ALWAYS
    assert spec.restart_policy.crash.HasField("allowed_crashes")
    assert spec.restart_policy.backoff.max == "60s"
    assert to_spec({"restart_policy": {"when": "never"}}).restart_policy.when == (
        container_pb2.RESTART_WHEN_NEVER
    )


def test_a_dict_spec_with_an_unknown_key_or_when_is_refused_locally() -> None:
    with pytest.raises(ValueError, match="comand"):
        to_spec({"comand": ["x"]})
    with pytest.raises(ValueError, match=r"restart_policy\.when"):
        to_spec({"restart_policy": {"when": "sometimes"}})


# -- the clients against a real server


async def test_async_client_manages_a_container_from_a_dict_spec(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    async with AsyncClient(h.address) as corral:
        started = await corral.start_container("web", sleeper(labels={"team": "a"}))
        assert started.state == State.CONTAINER_STATE_RUNNING
        assert list(started.spec.command) == SLEEP
        assert (await corral.get_container("web")).instance_id == started.instance_id

        for name in ("api", "db"):
            await corral.start_container(name, sleeper())
        names = [c.name for c in await corral.list_containers(page_size=1)]
        assert names == ["api", "db", "web"]
        labelled = await corral.list_containers(filter="label.team=a")
        assert [c.name for c in labelled] == ["web"]

        stopped = await corral.stop_container("web", grace_period="2s")
        assert stopped.state == State.CONTAINER_STATE_STOPPED
        await corral.delete_container("web")
        with pytest.raises(ContainerNotFoundError) as caught:
            await corral.get_container("web")
        assert caught.value.reason == "CONTAINER_NOT_FOUND"
        assert caught.value.resource_name == "web"

        info = await corral.get_operator_info()
        assert info.runtime == "process"
        events = await corral.list_events(page_size=2)
        assert [e.sequence for e in events] == list(range(1, info.event_sequence + 1))
        only_db = await corral.list_events(names=["db"])
        assert only_db and {e.name for e in only_db} == {"db"}


async def test_sync_client_manages_a_container_from_a_thread(
    servers: ServerFactory,
) -> None:
    h = await servers.start()

    def scenario() -> None:
        with Client(h.address, timeout=20) as corral:
            started = corral.start_container("job", sleeper(), request_id="r-1")
            again = corral.start_container("job", sleeper(), request_id="r-1")
            assert again.instance_id == started.instance_id
            restarted = corral.restart_container("job")
            assert restarted.instance_id != started.instance_id
            assert [c.name for c in corral.list_containers()] == ["job"]
            with pytest.raises(ContainerNotStoppedError):
                corral.delete_container("job")
            corral.stop_container("job")
            corral.delete_container("job")
            with pytest.raises(ContainerNotFoundError):
                corral.get_container("job")
            with pytest.raises(RuntimeError, match="closed"):
                corral.close()
                corral.get_operator_info()

    await asyncio.to_thread(scenario)


async def test_a_crash_loop_is_refused_until_forced_or_cleared(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    crasher = {
        "command": [PY, "-c", "raise SystemExit(3)"],
        "restart_policy": {
            "when": "on_failure",
            "crash": {"window": "10m", "allowed_crashes": 0},
            "backoff": {"initial": "0s", "max": "1s"},
        },
    }
    async with AsyncClient(h.address) as corral:
        await corral.start_container("crasher", crasher)
        await h.wait_event("crasher", EventType.CRASH_LOOP)

        with pytest.raises(CrashLoopDetectedError) as caught:
            await corral.start_container("crasher")
        assert caught.value.code.name == "FAILED_PRECONDITION"
        assert "ClearCrashHistory" in caught.value.message

        forced = await corral.start_container("crasher", force=True)
        assert forced.crash_loop.count >= 1
        await h.wait_event("crasher", EventType.CRASH_LOOP)
        cleared = await corral.clear_crash_history("crasher")
        assert not cleared.crash_loop.active
        assert len(cleared.crash_history) == 0


async def test_a_member_cannot_be_deleted_and_reconcile_restarts_it(
    servers: ServerFactory,
) -> None:
    h = await servers.start(member("web"))
    async with AsyncClient(h.address) as corral:
        assert list((await corral.get_operator_info()).min_replica_set) == ["web"]
        await corral.stop_container("web")
        with pytest.raises(MinReplicaSetContainerError):
            await corral.delete_container("web")
        result = await corral.reconcile_fleet()
        assert list(result.skipped_names) == ["web"]


async def test_ad_hoc_containers_are_refused_when_disabled(
    servers: ServerFactory,
) -> None:
    h = await servers.start(member("web"), allow_ad_hoc_containers=False)
    async with AsyncClient(h.address) as corral:
        with pytest.raises(AdHocContainerNotAllowedError) as caught:
            await corral.start_container("extra", sleeper())
        assert caught.value.resource_name == "extra"


async def test_an_invalid_spec_names_each_bad_field(servers: ServerFactory) -> None:
    h = await servers.start()
    async with AsyncClient(h.address) as corral:
        with pytest.raises(InvalidArgumentError) as caught:
            await corral.start_container(
                "bad",
                sleeper(
                    stop_grace_period="soon",
                    restart_policy={"crash": {"window": "forever"}},
                ),
            )
    fields = {v.field for v in caught.value.field_violations}
    assert {"spec.stop_grace_period", "spec.restart_policy.crash.window"} <= fields
    assert caught.value.code.name == "INVALID_ARGUMENT"


async def test_reports_need_the_instances_own_token(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    env_file = tmp_path / "env.json"
    dump_env = (
        "import json, os, time\n"
        f"open({str(env_file)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
        "time.sleep(300)"
    )
    async with AsyncClient(h.address) as corral:
        await corral.start_container("a", {"command": [PY, "-c", dump_env]})
        await corral.start_container("b", sleeper())
        env = await eventually(
            lambda: env_file.exists() and json.loads(env_file.read_text() or "null")
        )
        instance = env["CORRAL_INSTANCE_ID"]
        with pytest.raises(UnauthenticatedError):
            await corral.report_event("a", instance, "started")

    async with AsyncClient(h.address, token="not-a-token") as stranger:
        with pytest.raises(UnauthenticatedError):
            await stranger.report_event("a", instance, "started")

    async with AsyncClient(h.address, token=env["CORRAL_TOKEN"]) as workload:
        with pytest.raises(PermissionDeniedError):
            await workload.report_event("b", instance, "started")
        first = await workload.report_event("a", instance, "started", event_id="e-1")
        again = await workload.report_event("a", instance, "started", event_id="e-1")
    assert not first.duplicate
    assert again.duplicate and again.sequence == first.sequence
    assert (await h.get("a")).ready


# -- watching


async def test_a_watch_filters_and_can_yield_heartbeats(servers: ServerFactory) -> None:
    h = await servers.start()
    async with AsyncClient(h.address) as corral:
        await corral.start_container("a", sleeper())
        await corral.start_container("b", sleeper())

        async with corral.watch_events(names=["b"], types=["RUNNING"]) as watch:
            event = await anext(watch)
        assert (event.name, event.type) == ("b", event_pb2.EVENT_TYPE_RUNNING)

        quiet = corral.watch_events(names=["nobody"], heartbeats=True)
        beat = await asyncio.wait_for(anext(quiet), 10)
        await quiet.aclose()
        assert isinstance(beat, operator_pb2.Heartbeat)
        assert beat.head_sequence == (await corral.get_operator_info()).event_sequence


async def test_a_cursor_past_the_head_raises_out_of_range(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    async with AsyncClient(h.address) as corral:
        await corral.start_container("a", sleeper())
        head = (await corral.get_operator_info()).event_sequence
        with pytest.raises(CursorOutOfRangeError) as caught:
            async for _ in corral.watch_events(after_sequence=head + 50):
                pass
    assert caught.value.head_sequence == head
    assert caught.value.oldest_sequence == 1

    def sync_watch() -> None:
        with Client(h.address) as corral, pytest.raises(CursorOutOfRangeError):
            next(corral.watch_events(after_sequence=head + 50))

    await asyncio.to_thread(sync_watch)


async def test_a_watch_without_resume_raises_when_the_operator_stops(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    async with AsyncClient(h.address) as corral:
        watch = corral.watch_events(resume=False, heartbeats=True)
        await asyncio.wait_for(anext(watch), 10)
        await servers.stop(h)
        with pytest.raises(UnavailableError):
            while True:
                await asyncio.wait_for(anext(watch), 10)


async def test_an_async_watch_resumes_across_an_operator_restart(
    servers: ServerFactory,
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    h = await servers.start(listen=listen)
    seen: list[event_pb2.Event] = []
    async with AsyncClient(listen) as corral:
        await corral.start_container("one", sleeper())
        watch = corral.watch_events()

        async def follow() -> None:
            async for event in watch:
                seen.append(event)

        follower = asyncio.create_task(follow())
        head = (await corral.get_operator_info()).event_sequence
        await eventually(lambda: seen and seen[-1].sequence == head)

        await servers.stop(h)
        await servers.start(listen=listen)
        await corral.start_container("two", sleeper())
        head = (await corral.get_operator_info()).event_sequence
        await eventually(lambda: seen and seen[-1].sequence == head)
        await watch.aclose()
        await asyncio.wait_for(follower, 10)

    assert [e.sequence for e in seen] == list(range(1, head + 1))
    assert watch.reconnects >= 1
    assert watch.last_sequence == head
    assert {"one", "two"} <= {e.name for e in seen}


async def test_a_sync_watch_resumes_across_an_operator_restart(
    servers: ServerFactory,
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    h = await servers.start(listen=listen)
    seen: list[event_pb2.Event] = []
    corral = Client(listen)
    watch = corral.watch_events()

    def follow() -> None:
        seen.extend(watch)

    follower = threading.Thread(target=follow, name="sync-watch")
    follower.start()
    try:
        async with AsyncClient(listen) as control:
            await control.start_container("one", sleeper())
            head = (await control.get_operator_info()).event_sequence
            await eventually(lambda: seen and seen[-1].sequence == head)

            await servers.stop(h)
            await servers.start(listen=listen)
            await control.start_container("two", sleeper())
            head = (await control.get_operator_info()).event_sequence
            await eventually(lambda: seen and seen[-1].sequence == head)
    finally:
        watch.close()
        await asyncio.to_thread(follower.join, 10)
        corral.close()

    assert not follower.is_alive()
    assert [e.sequence for e in seen] == list(range(1, head + 1))
    assert watch.reconnects >= 1
