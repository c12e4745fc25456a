"""Rule 9: corral's own restart loses nothing. A real ``corral serve`` child,
SIGKILLed and restarted, over a real SQLite file and real workloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from corral.v1 import container_pb2, operator_pb2, operator_pb2_grpc
from tests.harness import CorralProcess, pid_alive, workload_pids

State = container_pb2.ContainerState
SLEEP = [sys.executable, "-c", "import time; time.sleep(300)"]

FLEET = f"""
[operator]
reconcile_interval = "0s"

[[containers]]
name = "keep"
command = {json.dumps(SLEEP)}

[[containers]]
name = "dies"
command = {json.dumps(SLEEP)}
restart_policy = {{ when = "always", backoff = {{ initial = "0s", max = "1s" }} }}

[[containers]]
name = "stopped"
command = {json.dumps(SLEEP)}
"""


@pytest.fixture
def corral(tmp_path: Path, workload_addresses: set[str]) -> Iterator[CorralProcess]:
    config = tmp_path / "fleet.toml"
    config.write_text(FLEET)
    process = CorralProcess(config, tmp_path / "data", workload_addresses)
    try:
        yield process
    finally:
        process.kill()


def stub(address: str) -> operator_pb2_grpc.OperatorServiceStub:
    return operator_pb2_grpc.OperatorServiceStub(grpc.insecure_channel(address))


def get(address: str, name: str) -> container_pb2.Container:
    reply = stub(address).GetContainer(
        operator_pb2.GetContainerRequest(name=name), timeout=10
    )
    return reply.container


def instances_of(address: str, instance_id: str) -> list[int]:
    """Live processes started for one instance (leaders of their own group)."""
    marker = f"CORRAL_INSTANCE_ID={instance_id}".encode()
    return [
        pid
        for pid in workload_pids({address})
        if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ]


def test_sigkill_of_corral_loses_nothing_and_duplicates_nothing(
    corral: CorralProcess,
) -> None:
    corral.start()
    address = corral.address
    operator = stub(address)
    operator.StopContainer(
        operator_pb2.StopContainerRequest(name="stopped"), timeout=30
    )
    keep, dies = get(address, "keep"), get(address, "dies")
    assert keep.state == dies.state == State.CONTAINER_STATE_RUNNING
    head = operator.ListEvents(
        operator_pb2.ListEventsRequest(), timeout=10
    ).head_sequence

    # corral dies hard; one workload dies while it is down.
    corral.kill()
    assert pid_alive(int(keep.runtime_id)) and pid_alive(int(dies.runtime_id))
    os.killpg(int(dies.runtime_id), signal.SIGKILL)

    corral.start()
    after_keep = get(address, "keep")
    assert after_keep.state == State.CONTAINER_STATE_RUNNING
    assert after_keep.runtime_id == keep.runtime_id
    assert after_keep.instance_id == keep.instance_id
    assert instances_of(address, keep.instance_id) == [int(keep.runtime_id)]
    assert len(workload_pids({address})) == 2

    after_dies = get(address, "dies")
    assert after_dies.instance_id != dies.instance_id
    assert after_dies.state == State.CONTAINER_STATE_RUNNING
    assert after_dies.last_exit.reason == container_pb2.ExitReason.EXIT_REASON_UNKNOWN
    assert after_dies.restart_count == dies.restart_count + 1

    still = get(address, "stopped")
    assert still.state == State.CONTAINER_STATE_STOPPED
    assert still.desired_state == container_pb2.DesiredState.DESIRED_STATE_STOPPED

    # The event log continued from where it was, without a gap.
    events = operator.ListEvents(
        operator_pb2.ListEventsRequest(page_size=1000), timeout=10
    )
    sequences = [event.sequence for event in events.events]
    assert sequences == list(range(1, events.head_sequence + 1))
    assert events.head_sequence > head
    adopted = [e for e in events.events if e.type == 14 and e.name == "keep"]  # ADOPTED
    assert len(adopted) == 1


def test_sigterm_shuts_down_gracefully_and_leaves_the_fleet_running(
    corral: CorralProcess,
) -> None:
    corral.start()
    keep = get(corral.address, "keep")
    assert corral.terminate() == 0
    assert pid_alive(int(keep.runtime_id))

    corral.start()
    again = get(corral.address, "keep")
    assert again.runtime_id == keep.runtime_id
    assert again.restart_count == 0


def test_a_second_operator_on_the_same_data_dir_is_refused(
    corral: CorralProcess, tmp_path: Path
) -> None:
    corral.start()
    second = subprocess.run(
        [
            sys.executable,
            "-c",
            "from corral.cli import main; main()",
            "serve",
            "--config",
            str(corral.config),
            "--data-dir",
            str(corral.data_dir),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2, second.stderr
    assert "another corral is already running" in second.stderr
    assert "Traceback" not in second.stderr
    # The first one is untouched and its fleet runs once.
    assert get(corral.address, "keep").state == State.CONTAINER_STATE_RUNNING


def test_a_busy_port_is_a_clear_startup_error(
    corral: CorralProcess, tmp_path: Path
) -> None:
    corral.start()
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from corral.cli import main; main()",
            "serve",
            "--config",
            str(corral.config),
            "--data-dir",
            str(tmp_path / "other-data"),
            "--listen",
            corral.address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 2, other.stderr
    assert f"cannot listen on {corral.address}" in other.stderr
    assert "Traceback" not in other.stderr
