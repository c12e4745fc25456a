"""The ``corral`` client commands, run as real processes against a real server.

Each command runs as a subprocess with ``asyncio.create_subprocess_exec``:
the server lives in the test's event loop, so a blocking ``subprocess.run``
would starve it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import grpc
import pytest

from corral.core.model import EventType
from corral.v1 import container_pb2, operator_pb2
from tests.harness import (
    PYTHON,
    REPO,
    CliResult,
    Harness,
    ServerFactory,
    eventually,
    free_port,
    run_cli,
)

SLEEP = [sys.executable, "-c", "import time; time.sleep(300)"]
FAIL = [sys.executable, "-c", "import sys, time; time.sleep(0.1); sys.exit(3)"]

RUNNING = container_pb2.CONTAINER_STATE_RUNNING
STOPPED = container_pb2.CONTAINER_STATE_STOPPED
CRASH_LOOP = container_pb2.CONTAINER_STATE_CRASH_LOOP


async def corral(address: str, *args: str) -> CliResult:
    """Runs ``corral ARGS...`` against ``address`` (through CORRAL_ADDR)."""
    return await run_cli(address, *args)


def member(name: str, command: list[str], extra: str = "") -> str:
    """A ``[[containers]]`` table for the fleet file."""
    return f"""
[[containers]]
name = "{name}"
command = {json.dumps(command)}
{extra}
"""


async def start_sleeper(h: Harness, name: str = "sleeper") -> container_pb2.Container:
    """Starts an ad-hoc sleeper through the CLI and waits until it runs."""
    result = await corral(h.address, "start", name, "--", *SLEEP)
    assert result.code == 0, result.err
    await h.wait_event(name, EventType.RUNNING)
    return await h.get(name)


async def _state_is(h: Harness, name: str, state: int) -> bool:
    """True when ``name``'s observed state is ``state``."""
    return (await h.get(name)).state == state


def table_rows(text: str) -> dict[str, list[str]]:
    """A printed table as {first cell: cells}; the header under its first cell."""
    return {line.split()[0]: line.split() for line in text.splitlines() if line}


# --- start -------------------------------------------------------------------


async def test_start_with_a_command_creates_and_runs_a_container(
    servers: ServerFactory,
) -> None:
    h = await servers.start()

    result = await corral(h.address, "start", "sleeper", "--", *SLEEP)

    assert result.code == 0, result.err
    assert result.out.startswith("sleeper: ")
    await h.wait_event("sleeper", EventType.RUNNING)
    container = await h.get("sleeper")
    assert container.state == RUNNING
    assert list(container.spec.command) == SLEEP
    assert container.runtime_id
    assert not container.min_replica_set


async def test_start_with_a_spec_file_env_and_restart_options(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(
        f"""
name = "worker"
command = {json.dumps(SLEEP)}
env = {{ FROM_FILE = "1" }}
stop_grace_period = "2s"
restart_policy = {{ when = "always", crash = {{ window = "5m", allowed_crashes = 2 }} }}
"""
    )

    result = await corral(
        h.address,
        "start",
        "worker",
        "--spec-file",
        str(spec_file),
        "--env",
        "FROM_FLAG=a=b",
        "--json",
    )

    assert result.code == 0, result.err
    container = json.loads(result.out)["container"]
    assert container["spec"]["env"] == {"FROM_FILE": "1", "FROM_FLAG": "a=b"}
    assert container["spec"]["stopGracePeriod"] == "2s"
    policy = container["spec"]["restartPolicy"]
    assert policy["when"] == "RESTART_WHEN_ALWAYS"
    assert policy["crash"] == {"window": "5m", "allowedCrashes": 2}


async def test_start_with_only_restart_and_env_changes_the_existing_spec(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    await start_sleeper(h)

    result = await corral(
        h.address, "start", "sleeper", "--restart", "never", "--env", "MODE=x"
    )

    assert result.code == 0, result.err
    spec = (await h.get("sleeper")).spec
    assert list(spec.command) == SLEEP
    assert dict(spec.env) == {"MODE": "x"}
    assert spec.restart_policy.when == container_pb2.RESTART_WHEN_NEVER


async def test_start_without_options_starts_the_existing_record(
    servers: ServerFactory,
) -> None:
    h = await servers.start()
    await start_sleeper(h)
    assert (await corral(h.address, "stop", "sleeper", "--grace", "1s")).code == 0

    result = await corral(h.address, "start", "sleeper")

    assert result.code == 0, result.err
    await h.wait_event("sleeper", EventType.RUNNING)
    assert (await h.get("sleeper")).state == RUNNING


async def test_start_with_an_invalid_spec_names_the_field(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    spec_file = tmp_path / "bad.json"
    spec_file.write_text(json.dumps({"command": SLEEP, "stop_grace_period": "10"}))

    result = await corral(h.address, "start", "bad", "--spec-file", str(spec_file))

    assert result.code == 1
    assert result.err.startswith("corral: INVALID_ARGUMENT: ")
    assert "  field spec.stop_grace_period: " in result.err
    assert "  reason: INVALID_ARGUMENT" in result.err


# --- ls and get --------------------------------------------------------------


async def test_ls_prints_a_table_of_every_container(servers: ServerFactory) -> None:
    h = await servers.start(member("alpha", SLEEP))
    await h.wait_event("alpha", EventType.RUNNING)
    sleeper = await start_sleeper(h)

    result = await corral(h.address, "ls", "--page-size", "1")

    assert result.code == 0, result.err
    rows = table_rows(result.out)
    assert rows["NAME"] == [
        "NAME",
        "STATE",
        "DESIRED",
        "READY",
        "RESTARTS",
        "RUNTIME-ID",
        "MEMBER",
        "AGE",
        "UPTIME",
    ]
    assert rows["alpha"][1:3] == ["RUNNING", "RUNNING"]
    assert rows["alpha"][6] == "yes"
    assert rows["sleeper"][5] == sleeper.runtime_id
    assert rows["sleeper"][6] == "no"


async def test_ls_json_and_filter(servers: ServerFactory) -> None:
    h = await servers.start(member("alpha", SLEEP))
    await h.wait_event("alpha", EventType.RUNNING)
    await start_sleeper(h)

    result = await corral(h.address, "ls", "--json")

    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert [c["name"] for c in data["containers"]] == ["alpha", "sleeper"]
    assert data["containers"][0]["state"] == "CONTAINER_STATE_RUNNING"
    assert data["containers"][0]["minReplicaSet"] is True
    assert int(data["eventSequence"]) > 0

    result = await corral(h.address, "ls", "--json", "--filter", "min_replica_set=true")
    assert result.code == 0, result.err
    assert [c["name"] for c in json.loads(result.out)["containers"]] == ["alpha"]


async def test_get_shows_last_exit_crash_history_and_crash_loop(
    servers: ServerFactory,
) -> None:
    policy = 'restart_policy = { when = "on_failure", crash = { allowed_crashes = 0 } }'
    h = await servers.start(member("crasher", FAIL, policy))
    await h.wait_event("crasher", EventType.CRASH_LOOP)

    result = await corral(h.address, "get", "crasher")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "State:         CRASH_LOOP" in lines
    assert "Member:        yes" in lines
    assert "Last exit:     EXITED code 3" in lines
    assert lines[lines.index("Crash history:") + 2].endswith("EXITED code 3")
    assert any(line.startswith("Crash loop:    ACTIVE") for line in lines)
    assert "`corral clear-crashes crasher` re-arms it now" in result.out

    result = await corral(h.address, "get", "crasher", "--json")
    assert result.code == 0, result.err
    container = json.loads(result.out)["container"]
    assert container["crashLoop"]["active"] is True
    assert container["lastExit"]["exitCode"] == 3


async def test_clear_crashes_rearms_a_crash_looping_container(
    servers: ServerFactory,
) -> None:
    policy = 'restart_policy = { when = "on_failure", crash = { allowed_crashes = 0 } }'
    h = await servers.start(member("crasher", FAIL, policy))
    await h.wait_event("crasher", EventType.CRASH_LOOP)

    result = await corral(h.address, "clear-crashes", "crasher")

    assert result.code == 0, result.err
    assert result.out.startswith("cleared the crash history of crasher: ")
    await h.wait_event("crasher", EventType.CRASH_HISTORY_CLEARED)


# --- stop, restart, rm -------------------------------------------------------


async def test_stop_stops_the_container(servers: ServerFactory) -> None:
    h = await servers.start()
    await start_sleeper(h)

    result = await corral(h.address, "stop", "sleeper", "--grace", "1s")

    assert result.code == 0, result.err
    assert "STOPPED" in result.out or "STOPPING" in result.out
    await eventually(
        lambda: _state_is(h, "sleeper", STOPPED), what="sleeper to be stopped"
    )
    container = await h.get("sleeper")
    assert container.desired_state == container_pb2.DESIRED_STATE_STOPPED


async def test_restart_starts_a_new_instance(servers: ServerFactory) -> None:
    h = await servers.start()
    before = await start_sleeper(h)

    result = await corral(h.address, "restart", "sleeper", "--json")

    assert result.code == 0, result.err
    instance = json.loads(result.out)["container"]["instanceId"]
    assert instance and instance != before.instance_id
    await eventually(lambda: _state_is(h, "sleeper", RUNNING), what="a new instance")
    assert (await h.get("sleeper")).runtime_id != before.runtime_id


async def test_rm_deletes_a_stopped_container(servers: ServerFactory) -> None:
    h = await servers.start()
    await start_sleeper(h)
    assert (await corral(h.address, "stop", "sleeper", "--grace", "1s")).code == 0

    result = await corral(h.address, "rm", "sleeper")

    assert result.code == 0, result.err
    assert result.out.strip() == "deleted sleeper"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await h.get("sleeper")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_rm_of_a_running_container_is_refused(servers: ServerFactory) -> None:
    h = await servers.start()
    await start_sleeper(h)

    result = await corral(h.address, "rm", "sleeper")

    assert result.code == 1
    assert result.out == ""
    first, *details = result.err.splitlines()
    assert first.startswith("corral: FAILED_PRECONDITION: ")
    assert "stop it" in first
    assert "  reason: CONTAINER_NOT_STOPPED" in details
    assert (await h.get("sleeper")).state == RUNNING


# --- errors ------------------------------------------------------------------


async def test_get_of_an_unknown_name_is_not_found(servers: ServerFactory) -> None:
    h = await servers.start()

    result = await corral(h.address, "get", "nobody")

    assert result.code == 1
    assert result.err.startswith("corral: NOT_FOUND: ")
    assert "nobody" in result.err
    assert "  reason: CONTAINER_NOT_FOUND" in result.err.splitlines()


async def test_an_invalid_name_is_invalid_argument_naming_the_field(
    servers: ServerFactory,
) -> None:
    h = await servers.start()

    result = await corral(h.address, "get", "Not_A_Name")

    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].startswith("corral: INVALID_ARGUMENT: ")
    assert any(line.startswith("  field name: ") for line in lines)


async def test_an_unreachable_operator_gets_a_helpful_message() -> None:
    address = f"127.0.0.1:{free_port()}"

    result = await corral(address, "ls")

    assert result.code == 1
    assert f"is corral running at {address}? start it with `make run`" in result.err
    assert "Traceback" not in result.err


async def test_usage_errors_exit_2() -> None:
    address = f"127.0.0.1:{free_port()}"

    assert (await corral(address, "get")).code == 2
    assert (await corral(address, "ls", "--no-such-option")).code == 2
    result = await corral(address, "start", "x", "--command", "a", "--", "b")
    assert result.code == 2
    assert "either with --command or after --" in result.err
    result = await corral(address, "start", "x", "--env", "NO_EQUALS", "--", "b")
    assert result.code == 2
    assert "K=V" in result.err


# --- events, reconcile, info -------------------------------------------------


async def test_events_lists_the_log_with_names_after_and_limit(
    servers: ServerFactory,
) -> None:
    h = await servers.start(member("alpha", SLEEP))
    await h.wait_event("alpha", EventType.RUNNING)
    await start_sleeper(h)

    result = await corral(h.address, "events", "--name", "sleeper")

    assert result.code == 0, result.err
    rows = [line.split() for line in result.out.splitlines()[1:]]
    assert {row[2] for row in rows} == {"sleeper"}
    types = [row[3] for row in rows]
    assert types[:3] == ["CREATED", "STARTING", "RUNNING"]

    result = await corral(h.address, "events", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    sequences = [int(event["sequence"]) for event in data["events"]]
    assert sequences == list(range(1, int(data["headSequence"]) + 1))

    result = await corral(h.address, "events", "--after", "2", "--limit", "2", "--json")
    assert result.code == 0, result.err
    assert [e["sequence"] for e in json.loads(result.out)["events"]] == ["3", "4"]


async def test_reconcile_prints_counts_and_failures(servers: ServerFactory) -> None:
    policy = 'restart_policy = { when = "on_failure", crash = { allowed_crashes = 0 } }'
    fleet = member("alpha", SLEEP) + member("crasher", FAIL, policy)
    h = await servers.start(fleet)
    await h.wait_event("crasher", EventType.CRASH_LOOP)
    await eventually(lambda: _state_is(h, "alpha", RUNNING), what="alpha to run")

    result = await corral(h.address, "reconcile")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "already running: 1" in lines
    assert "failed:          1" in lines
    assert any(line.startswith("  crasher: CRASH_LOOP_DETECTED: ") for line in lines), (
        result.out
    )

    result = await corral(h.address, "reconcile", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["alreadyRunning"] == 1
    assert data["failed"][0]["reason"] == "CRASH_LOOP_DETECTED"


async def test_info_describes_the_operator(servers: ServerFactory) -> None:
    h = await servers.start(member("alpha", SLEEP))

    result = await corral(h.address, "info")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "Runtime:             process" in lines
    assert "Min replica set:     alpha" in lines
    assert "Ad-hoc containers:   allowed" in lines

    result = await corral(h.address, "info", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["minReplicaSet"] == ["alpha"]
    assert data["settings"]["runtime"] == "process"


def test_every_operator_rpc_but_watch_has_a_command() -> None:
    """A new RPC in the contract needs a client command (or a listed reason)."""
    from corral.cli import main

    rpcs = set(
        operator_pb2.DESCRIPTOR.services_by_name["OperatorService"].methods_by_name
    )
    commands = {
        "StartContainer": "start",
        "StopContainer": "stop",
        "RestartContainer": "restart",
        "GetContainer": "get",
        "ListContainers": "ls",
        "DeleteContainer": "rm",
        "ClearCrashHistory": "clear-crashes",
        "ReconcileFleet": "reconcile",
        "GetOperatorInfo": "info",
        "ListEvents": "events",
    }
    not_yet = {"WatchEvents"}  # streaming; `events` reads the same log by pages

    assert rpcs == set(commands) | not_yet
    assert set(commands.values()) <= set(main.commands)


async def test_events_follow_streams_live_events_and_resumes(
    servers: ServerFactory,
) -> None:
    port = free_port()
    h = await servers.start(listen=f"127.0.0.1:{port}")
    env = {**os.environ, "CORRAL_ADDR": h.address}
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-c",
        "from corral.cli import main; main()",
        "events",
        "--follow",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    assert process.stdout is not None
    try:

        async def next_event() -> dict[str, object]:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "the follower ended early"
            event: dict[str, object] = json.loads(line)
            return event

        await h.stub.StartContainer(
            operator_pb2.StartContainerRequest(
                name="live", spec=container_pb2.ContainerSpec(command=SLEEP)
            )
        )
        seen = [await next_event() for _ in range(3)]
        assert [e["type"] for e in seen] == [
            "EVENT_TYPE_CREATED",
            "EVENT_TYPE_STARTING",
            "EVENT_TYPE_RUNNING",
        ]

        # The operator restarts on the same address; the follower resumes.
        await servers.stop(h)
        h = await servers.start(listen=f"127.0.0.1:{port}")
        await h.stub.StopContainer(operator_pb2.StopContainerRequest(name="live"))
        after = [await next_event() for _ in range(3)]
        assert [e["type"] for e in after] == [
            "EVENT_TYPE_ADOPTED",
            "EVENT_TYPE_STOPPING",
            "EVENT_TYPE_STOPPED",
        ]
        sequences = [int(str(e["sequence"])) for e in seen + after]
        assert sequences == list(range(1, 7))
    finally:
        process.kill()
        await process.wait()
