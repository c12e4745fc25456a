"""The workload helper inside real child processes that corral starts: it
reports each transition, runs its hooks, handles SIGTERM, and never takes the
workload down when corral is unreachable."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from corral.core.model import EventType
from corral.sdk import AsyncClient, StopInfo, Workload
from corral.v1 import container_pb2, event_pb2
from tests.harness import ServerFactory, eventually, free_port

PY = sys.executable
Reason = container_pb2.ExitReason


def workload(body: str, **policy: Any) -> dict[str, Any]:
    """A spec running ``body`` (Python, using corral.sdk) that is never restarted."""
    return {
        "command": [PY, "-c", textwrap.dedent(body)],
        "stop_grace_period": "10s",
        "restart_policy": {"when": "never", **policy},
    }


def hook_log(path: Path) -> list[Any]:
    """The JSON lines a workload's hooks appended to ``path``."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_workload_reports_started_and_becomes_ready(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.jsonl"
    body = f"""
        import json, time
        from corral.sdk import Workload

        workload = Workload()

        @workload.on_start
        def started():
            with open({str(log)!r}, "a") as out:
                out.write(json.dumps(["start", workload.name]) + "\\n")

        workload.run(lambda: time.sleep(300))
    """
    h = await servers.start()
    async with AsyncClient(h.address) as corral:
        await corral.start_container("ready", workload(body))
        ready = await h.wait_event("ready", EventType.READY)
        container = await corral.get_container("ready")

    assert container.ready
    assert container.state == container_pb2.CONTAINER_STATE_RUNNING
    assert ready.instance_id == container.instance_id
    assert "STARTED" in ready.message
    assert hook_log(log) == [["start", "ready"]]


async def test_an_unhandled_exception_is_reported_as_the_exits_cause(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.jsonl"
    body = f"""
        import json
        from corral.sdk import Workload

        workload = Workload()

        def note(*entry):
            with open({str(log)!r}, "a") as out:
                out.write(json.dumps(entry) + "\\n")

        @workload.on_error
        def failed(error):
            note("error", repr(error))

        @workload.on_stop
        def stopped(info):
            note("stop", info.exit_code, info.reason)

        def main():
            raise RuntimeError("database unreachable at db:5432")

        workload.run(main)
    """
    h = await servers.start()
    async with AsyncClient(h.address) as corral:
        await corral.start_container("failing", workload(body))
        exited = await h.wait_event("failing", EventType.EXITED)
        container = await corral.get_container("failing")

    assert exited.exit is not None
    last = container.last_exit
    assert last.reason == Reason.EXIT_REASON_WORKLOAD_ERROR
    assert "RuntimeError: database unreachable at db:5432" in last.message
    assert last.exit_code == 1
    assert hook_log(log) == [
        ["error", "RuntimeError('database unreachable at db:5432')"],
        ["stop", 1, "error"],
    ]


async def test_sigterm_runs_on_stop_and_exits_cleanly(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.jsonl"
    body = f"""
        import json, time
        from corral.sdk import Workload

        workload = Workload()

        @workload.on_stop
        def stopped(info):
            with open({str(log)!r}, "a") as out:
                entry = [info.exit_code, info.reason, info.signal]
                out.write(json.dumps(entry) + "\\n")

        def main():
            while True:
                try:
                    time.sleep(300)
                except Exception:
                    pass  # The stop must get through the workload's own handlers.

        workload.run(main)
    """
    h = await servers.start()
    async with AsyncClient(h.address) as corral:
        await corral.start_container("graceful", workload(body))
        await h.wait_event("graceful", EventType.READY)
        began = time.monotonic()
        await corral.stop_container("graceful")
        stopped = await h.wait_event("graceful", EventType.STOPPED)
        container = await corral.get_container("graceful")
        reports = [
            e.message
            for e in await corral.list_events(names=["graceful"])
            if e.type == event_pb2.EVENT_TYPE_REPORTED
        ]

    assert time.monotonic() - began < 8, "SIGTERM should not wait for SIGKILL"
    assert stopped.exit is not None and stopped.exit.exit_code == 0
    assert container.state == container_pb2.CONTAINER_STATE_STOPPED
    assert container.last_exit.exit_code == 0
    assert hook_log(log) == [[0, "signal", 15]]
    assert any("STOPPED" in message for message in reports), reports


async def test_a_report_rides_out_an_operator_restart(
    servers: ServerFactory, tmp_path: Path
) -> None:
    env_file = tmp_path / "env.json"
    body = f"""
        import json, os, time
        open({str(env_file)!r}, "w").write(json.dumps(dict(os.environ)))
        time.sleep(300)
    """
    listen = f"127.0.0.1:{free_port()}"
    h = await servers.start(listen=listen)
    async with AsyncClient(listen) as corral:
        await corral.start_container("patient", workload(body))
    env = await eventually(
        lambda: env_file.exists() and json.loads(env_file.read_text() or "null")
    )
    await servers.stop(h)

    reporter = Workload(env, report_budget=10)
    report = asyncio.create_task(asyncio.to_thread(reporter.report_started))
    await asyncio.sleep(0.5)
    h = await servers.start(listen=listen)
    reply = await asyncio.wait_for(report, 15)

    assert reply is not None and not reply.duplicate
    assert (await h.get("patient")).ready


async def test_reports_never_raise_when_the_operator_is_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {
        "CONTAINER_NAME": "orphan",
        "CORRAL_INSTANCE_ID": "i-1",
        "CORRAL_ADDR": f"127.0.0.1:{free_port()}",
        "CORRAL_TOKEN": "t" * 32,
    }
    reporter = Workload(environ, report_budget=1.0)
    assert reporter.managed

    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="corral.sdk"):
        assert await asyncio.to_thread(reporter.report_error, "boom", "5s") is None
    assert time.monotonic() - began < 4
    assert any("could not report" in r.getMessage() for r in caplog.records)


def test_outside_corral_the_helper_runs_hooks_and_reports_nothing() -> None:
    reporter = Workload({})
    calls: list[Any] = []
    reporter.on_start(lambda: calls.append("start"))
    reporter.on_stop(lambda: calls.append("stop, no argument"))

    @reporter.on_stop
    def with_info(info: StopInfo) -> None:
        calls.append((info.exit_code, info.reason))

    assert not reporter.managed
    assert reporter.report_started() is None
    assert reporter.run(lambda: 3, exit=False) == 3
    assert calls == ["start", "stop, no argument", (3, "returned")]

    calls.clear()
    assert reporter.run(lambda: sys.exit(4), exit=False) == 4
    assert calls == ["start", "stop, no argument", (4, "exit")]


def test_an_async_main_runs_to_its_exit_status() -> None:
    async def main() -> int:
        await asyncio.sleep(0)
        return 7

    assert Workload({}).run(main, exit=False) == 7
