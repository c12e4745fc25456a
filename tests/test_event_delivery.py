"""The event stream loses nothing and duplicates nothing: across operator
restarts and a SIGKILL, for slow subscribers, and for a hundred at once."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from corral.sdk import Client
from corral.v1 import event_pb2, lifecycle_pb2, lifecycle_pb2_grpc, operator_pb2
from tests.harness import CorralProcess, ServerFactory, eventually

ENV_DUMP = (
    "import os, json, sys, time\n"
    "open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))\n"
    "time.sleep(600)"
)


def fleet(env_file: Path) -> str:
    command = [sys.executable, "-c", ENV_DUMP, str(env_file)]
    return f"""
[operator]
reconcile_interval = "0s"

[[containers]]
name = "source"
command = {json.dumps(command)}
"""


@pytest.fixture
def corral(tmp_path: Path, workload_addresses: set[str]) -> Iterator[CorralProcess]:
    config = tmp_path / "fleet.toml"
    config.write_text(fleet(tmp_path / "env.json"))
    process = CorralProcess(config, tmp_path / "data", workload_addresses)
    try:
        yield process
    finally:
        process.kill()


_local = threading.local()
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def report_until_acknowledged(address: str, env: dict[str, str], event_id: str) -> None:
    """One STARTED report, retried with the same event_id until acknowledged
    (a shutdown cancels calls in flight; a dead operator refuses them)."""
    request = lifecycle_pb2.ReportEventRequest(
        name=env["CONTAINER_NAME"],
        instance_id=env["CORRAL_INSTANCE_ID"],
        event_id=event_id,
        type=lifecycle_pb2.REPORT_TYPE_STARTED,
    )
    metadata = (("authorization", f"Bearer {env['CORRAL_TOKEN']}"),)
    if not hasattr(_local, "stub"):
        channel = grpc.insecure_channel(address)
        _local.stub = lifecycle_pb2_grpc.LifecycleServiceStub(channel)
    deadline = time.monotonic() + 120
    while True:
        try:
            _local.stub.ReportEvent(request, metadata=metadata, timeout=10)
            return
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            if code not in RETRYABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_ten_thousand_events_across_restarts_and_a_sigkill(
    corral: CorralProcess, tmp_path: Path
) -> None:
    corral.start()
    env_file = tmp_path / "env.json"
    deadline = time.monotonic() + 30
    while not env_file.exists() or not env_file.read_text():
        assert time.monotonic() < deadline, "the source workload did not start"
        time.sleep(0.02)
    env = json.loads(env_file.read_text())

    # A subscriber follows the whole log from the start, resuming by itself.
    received: list[event_pb2.Event] = []
    done = threading.Event()

    def subscribe() -> None:
        with Client(corral.address) as client:
            watch = client.watch_events(
                after_sequence=0, heartbeats=True, reconnect_timeout=120
            )
            for item in watch:
                if isinstance(item, event_pb2.Event):
                    received.append(item)
                if done.is_set() and received and received[-1].sequence >= target[0]:
                    return

    target = [0]
    watcher = threading.Thread(target=subscribe, name="subscriber", daemon=True)
    watcher.start()

    # 10,000 reports from 16 threads, while the operator is restarted three
    # times gracefully and SIGKILLed once.
    ids = [f"r-{uuid.uuid4().hex}" for _ in range(10_000)]
    with ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(report_until_acknowledged, corral.address, env, event_id)
            for event_id in ids
        ]
        for round_, kill in enumerate([False, False, False, True]):
            # Wait until some progress is made, then break the connections.
            goal = (round_ + 1) * 2000
            while sum(f.done() for f in futures) < goal:
                time.sleep(0.01)
            if kill:
                corral.kill()
            else:
                corral.terminate()
            corral.start()
        for future in futures:
            future.result()

    with Client(corral.address) as client:
        head = client.get_operator_info().event_sequence
    target[0] = head
    done.set()
    watcher.join(120)
    assert not watcher.is_alive(), f"subscriber stuck at {received[-1].sequence}"

    sequences = [event.sequence for event in received]
    assert sequences == list(range(1, head + 1)), "gap or duplicate"
    ready = [e for e in received if e.type == event_pb2.EVENT_TYPE_READY]
    assert len(ready) == 10_000


async def produce(h: object, count: int, tmp_path: Path) -> None:
    """Appends ``count`` events by starting and stopping a container."""
    from tests.test_operator import spec

    harness = h  # typed loosely: tests.harness.Harness
    stub = harness.stub  # type: ignore[attr-defined]
    for index in range(count):
        await stub.StartContainer(
            operator_pb2.StartContainerRequest(
                name=f"e{index % 50}", spec=spec(sys.executable, "-c", "pass")
            )
        )


async def read_all(
    h: object, count: int, delay_after: int = -1, pause: float = 0.0
) -> list[int]:
    """Reads ``count`` events from a WatchEvents stream from the start."""
    stub = h.stub  # type: ignore[attr-defined]
    stream = stub.WatchEvents(operator_pb2.WatchEventsRequest(after_sequence=0))
    sequences: list[int] = []
    async for item in stream:
        if not item.HasField("event"):
            continue
        sequences.append(item.event.sequence)
        if len(sequences) == delay_after:
            await asyncio.sleep(pause)  # a subscriber that stops reading a while
        if len(sequences) == count:
            break
    stream.cancel()
    return sequences


async def test_a_stalled_subscriber_catches_up_while_others_stay_live(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    slow = asyncio.create_task(read_all(h, 600, delay_after=1, pause=3.0))
    fast = asyncio.create_task(read_all(h, 600))
    await produce(h, 200, tmp_path)  # about three events each
    await eventually(lambda: h.operator.hub.head >= 600, timeout=60)

    # The live subscriber has everything while the slow one still sleeps.
    live = await asyncio.wait_for(fast, 30)
    assert not slow.done()
    assert live == list(range(1, 601))

    caught_up = await asyncio.wait_for(slow, 60)
    assert caught_up == list(range(1, 601))


async def test_a_hundred_subscribers_see_identical_sequences(
    servers: ServerFactory, tmp_path: Path
) -> None:
    h = await servers.start()
    readers = [asyncio.create_task(read_all(h, 300)) for _ in range(100)]
    await produce(h, 100, tmp_path)
    results = await asyncio.wait_for(asyncio.gather(*readers), 120)
    assert all(result == list(range(1, 301)) for result in results)
