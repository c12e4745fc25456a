"""The example fleet (``examples/fleet.toml``) loads, and behaves as it says."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from corral.config import load_config
from corral.core.model import ContainerSpec, EventType, RestartWhen
from corral.v1 import container_pb2
from tests.harness import REPO, ServerFactory, eventually, free_port

EXAMPLES = REPO / "examples"
FLEET = EXAMPLES / "fleet.toml"
SECRET = "not-a-real-key-42"


def envbuilder() -> ModuleType:
    """``examples/envbuilder.py``, imported from its file."""
    spec = importlib.util.spec_from_file_location(
        "example_envbuilder", EXAMPLES / "envbuilder.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_fleet_loads_and_validates() -> None:
    config = load_config(FLEET, environ={})

    operator = config.operator
    assert operator.listen == "127.0.0.1:50051"
    assert operator.data_dir == REPO / "data"
    assert operator.env_builder == "envbuilder:build"
    specs = dict(config.containers)
    assert list(specs) == ["web", "worker", "greeter", "crasher"]

    assert "http.server" in " ".join(specs["web"].command)
    assert specs["worker"].config == {"queue": "jobs", "concurrency": 4}
    assert specs["worker"].env["WORKER_API_KEY"] == "${secret:WORKER_API_KEY}"
    policy = specs["crasher"].restart_policy
    assert policy.when is RestartWhen.ON_FAILURE
    assert policy.crash.window == timedelta(minutes=1)
    assert policy.crash.allowed_crashes == 3
    assert policy.backoff.initial == timedelta(milliseconds=200)
    assert policy.backoff.max == timedelta(seconds=1)


def test_the_environment_builder_turns_config_into_worker_variables() -> None:
    build = envbuilder().build

    spec = ContainerSpec(command=("w",), config={"queue": "jobs", "concurrency": 4.0})
    assert build(spec, {}) == {"WORKER_QUEUE": "jobs", "WORKER_CONCURRENCY": "4"}
    assert build(ContainerSpec(command=("w",)), {"SECRET": "x"}) == {}


async def test_the_example_fleet_serves_configures_and_trips_the_breaker(
    servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fleet's commands are relative to the repository root, and its env
    # builder is imported by module name from examples/.
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    port = free_port()
    fleet = FLEET.read_text().replace('PORT = "8080"', f'PORT = "{port}"')
    assert str(port) in fleet

    # As under `make run`, the venv's python3 (which has the SDK) comes first.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    h = await servers.start(fleet, environ={"WORKER_API_KEY": SECRET, "PATH": path})

    # The greeter reports itself started through the SDK.
    await h.wait_event("greeter", EventType.READY, timeout=30, after=0)
    assert (await h.get("greeter")).ready

    # The crasher exits 1 again and again until the breaker trips.
    await h.wait_event("crasher", EventType.CRASH_LOOP, timeout=30)
    crasher = await h.get("crasher")
    assert crasher.state == container_pb2.CONTAINER_STATE_CRASH_LOOP
    assert len(crasher.crash_history) == 4
    assert crasher.last_exit.exit_code == 1

    # The web server answers HTTP on the port it was given.
    def fetch() -> int:
        url = f"http://127.0.0.1:{port}/"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status)
        except OSError:
            return 0

    async def answers() -> bool:
        return await asyncio.to_thread(fetch) == 200

    await eventually(answers, timeout=20, what="the web container to answer HTTP")

    # The worker got its config and its secret, and printed only its length.
    log = h.server.config.operator.data_dir / "logs" / "worker.log"

    def worker_announced() -> bool:
        return log.exists() and "got queue=jobs" in log.read_text()

    await eventually(worker_announced, timeout=20, what="the worker's first line")
    text = log.read_text()
    assert f"concurrency=4 api key of {len(SECRET)} characters" in text
    assert SECRET not in text
    worker = await h.get("worker")
    assert worker.state == container_pb2.CONTAINER_STATE_RUNNING
    assert worker.spec.env["WORKER_API_KEY"] == "${secret:WORKER_API_KEY}"


def test_the_example_workloads_need_only_stdlib_or_the_sdk() -> None:
    allowed = {"__future__", "os", "signal", "sys", "time", "collections", "typing"}
    for path in [*EXAMPLES.glob("workloads/*.py"), EXAMPLES / "envbuilder.py"]:
        imported = {
            line.split()[1]
            for line in Path(path).read_text().splitlines()
            if line.startswith(("import ", "from "))
        }
        # The SDK installs on its own; the server never enters a workload.
        outside = {m for m in imported if m.split(".")[0] not in allowed}
        assert outside <= {"corral.sdk"}, (path.name, outside)
