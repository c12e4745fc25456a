"""Event figures: ReportEvent throughput with many concurrent callers, and
WatchEvents delivery to many subscribers with its lag."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import corral, percentile
from corral.v1 import lifecycle_pb2, lifecycle_pb2_grpc, operator_pb2, operator_pb2_grpc

ENV_DUMP = (
    "import os, json, sys, time\n"
    "open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))\n"
    "time.sleep(3600)"
)


@dataclasses.dataclass
class LagResult:
    subscribers: int
    rate: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclasses.dataclass
class EventResult:
    reports: int
    callers: int
    reports_per_s: float
    ceiling_per_s: float
    subscribers: int
    fanout_events: int
    delivered_per_s: float
    lags: list[LagResult]


def fleet(env_file: Path) -> str:
    command = [sys.executable, "-c", ENV_DUMP, str(env_file)]
    return f"""
[operator]
reconcile_interval = "0s"

[[containers]]
name = "source"
command = {json.dumps(command)}
"""


def wait_env(env_file: Path) -> dict[str, str]:
    deadline = time.monotonic() + 60
    while not env_file.exists() or not env_file.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError("the source workload did not start")
        time.sleep(0.02)
    env: dict[str, str] = json.loads(env_file.read_text())
    return env


def report_request(env: dict[str, str]) -> lifecycle_pb2.ReportEventRequest:
    return lifecycle_pb2.ReportEventRequest(
        name=env["CONTAINER_NAME"],
        instance_id=env["CORRAL_INSTANCE_ID"],
        event_id=uuid.uuid4().hex,
        type=lifecycle_pb2.REPORT_TYPE_STARTED,
    )


async def report_throughput(
    address: str, env: dict[str, str], count: int, callers: int, health: bool = False
) -> float:
    """Durable reports per second with ``callers`` calls always in flight on
    one channel (or, with ``health``, plain health checks: the ceiling of a
    gRPC call on this machine with the same client)."""
    metadata = (("authorization", f"Bearer {env['CORRAL_TOKEN']}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        reports = lifecycle_pb2_grpc.LifecycleServiceStub(channel)
        checks = health_pb2_grpc.HealthStub(channel)
        await checks.Check(health_pb2.HealthCheckRequest())  # connect first
        remaining = count

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                if health:
                    await checks.Check(health_pb2.HealthCheckRequest())
                else:
                    await reports.ReportEvent(report_request(env), metadata=metadata)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return count / (time.perf_counter() - started)


async def fanout(address: str, subscribers: int, after: int, count: int) -> float:
    """Messages per second in total while ``subscribers`` each receive the
    same ``count`` logged events after ``after``."""
    channel = grpc.aio.insecure_channel(address)
    stub = operator_pb2_grpc.OperatorServiceStub(channel)

    async def subscriber() -> int:
        stream = stub.WatchEvents(operator_pb2.WatchEventsRequest(after_sequence=after))
        got = 0
        async for item in stream:
            if item.HasField("event"):
                got += 1
                if got == count:
                    break
        stream.cancel()
        return got

    started = time.perf_counter()
    received = await asyncio.gather(*(subscriber() for _ in range(subscribers)))
    elapsed = time.perf_counter() - started
    await channel.close(None)
    return sum(received) / elapsed


async def _subscribe(
    address: str, after: int, count: int, subscribers: int
) -> list[float]:
    """Runs ``subscribers`` streams after ``after`` until each got ``count``
    events; returns each event's lag, read from the send time it carries."""
    lags: list[float] = []

    async def subscriber() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = operator_pb2_grpc.OperatorServiceStub(channel)
            stream = stub.WatchEvents(
                operator_pb2.WatchEventsRequest(after_sequence=after)
            )
            got = 0
            async for item in stream:
                if not item.HasField("event"):
                    continue
                sent_ns = int(item.event.message.rpartition("lag-")[2])
                lags.append((time.perf_counter_ns() - sent_ns) / 1e6)
                got += 1
                if got == count:
                    break
            stream.cancel()

    await asyncio.gather(*(subscriber() for _ in range(subscribers)))
    return lags


def _subscriber_process(
    address: str, after: int, count: int, subscribers: int, results: Any
) -> None:
    results.put(asyncio.run(_subscribe(address, after, count, subscribers)))


async def live_lag(
    address: str, env: dict[str, str], subscribers: int, rate: int, seconds: float
) -> list[float]:
    """Each event's lag at ``rate`` events per second, from the moment its
    report was sent (an upper bound on when it happened) to its arrival at
    each subscriber. Subscribers run in two other processes, as separate
    programs would; CLOCK_MONOTONIC is shared by all processes."""
    metadata = (("authorization", f"Bearer {env['CORRAL_TOKEN']}"),)
    head = await _head(address)
    total = int(rate * seconds)

    # Subscribers first, in two processes, and a moment for them to connect.
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    halves = [subscribers - subscribers // 2, subscribers // 2]
    workers = [
        context.Process(
            target=_subscriber_process, args=(address, head, total, part, results)
        )
        for part in halves
        if part
    ]
    for worker in workers:
        worker.start()
    await asyncio.sleep(3.0)

    # One pacing loop starts each report at its due time.
    async with grpc.aio.insecure_channel(address) as channel:
        lifecycle = lifecycle_pb2_grpc.LifecycleServiceStub(channel)

        # At most 64 reports in flight, as 64 workloads each reporting in turn.
        gate = asyncio.Semaphore(64)

        async def send() -> None:
            async with gate:
                request = report_request(env)
                request.message = f"lag-{time.perf_counter_ns()}"
                await lifecycle.ReportEvent(request, metadata=metadata)

        started = time.perf_counter()
        sends = []
        for index in range(total):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sends.append(asyncio.create_task(send()))
        await asyncio.gather(*sends)

    lags: list[float] = []
    for _ in workers:
        lags.extend(await asyncio.to_thread(results.get, True, 120))
    for worker in workers:
        await asyncio.to_thread(worker.join, 30)
    return lags


def measure(
    reports: int,
    callers: int,
    subscribers: int,
    lag_runs: list[tuple[int, int]],
    seconds: float,
) -> EventResult:
    """Report throughput, fan-out to ``subscribers``, and live lag for each
    (subscribers, events per second) in ``lag_runs``."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-events-") as scratch:
        env_file = Path(scratch) / "env.json"
        with corral(fleet(env_file)) as server:
            server.start()
            env = wait_env(env_file)

            async def run() -> EventResult:
                address = server.address
                before = await _head(address)
                per_s = await report_throughput(address, env, reports, callers)
                ceiling = await report_throughput(
                    address, env, reports, callers, health=True
                )
                delivered = await fanout(address, subscribers, before, reports)
                lags = []
                for count, rate in lag_runs:
                    sample = await live_lag(address, env, count, rate, seconds)
                    lags.append(
                        LagResult(
                            subscribers=count,
                            rate=rate,
                            p50_ms=percentile(sample, 0.5),
                            p99_ms=percentile(sample, 0.99),
                            max_ms=max(sample),
                        )
                    )
                return EventResult(
                    reports=reports,
                    callers=callers,
                    reports_per_s=per_s,
                    ceiling_per_s=ceiling,
                    subscribers=subscribers,
                    fanout_events=reports,
                    delivered_per_s=delivered,
                    lags=lags,
                )

            return asyncio.run(run())


async def _head(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = operator_pb2_grpc.OperatorServiceStub(channel)
        info = await stub.GetOperatorInfo(operator_pb2.GetOperatorInfoRequest())
        return int(info.event_sequence)


if __name__ == "__main__":
    print(measure(10_000, 64, 100, [(10, 1000), (100, 100)], 5))
