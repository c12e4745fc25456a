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
class EventResult:
    reports: int
    callers: int
    reports_per_s: float
    ceiling_per_s: float
    subscribers: int
    rate: int
    delivered_per_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float


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


async def _report_calls(
    address: str, env: dict[str, str], count: int, callers: int, health: bool
) -> None:
    """``count`` reports (or health checks) from ``callers`` concurrent callers."""
    metadata = (("authorization", f"Bearer {env['CORRAL_TOKEN']}"),)
    channels = [grpc.aio.insecure_channel(address) for _ in range(4)]
    stubs = [lifecycle_pb2_grpc.LifecycleServiceStub(c) for c in channels]
    checks = [health_pb2_grpc.HealthStub(c) for c in channels]
    remaining = count

    async def caller(index: int) -> None:
        nonlocal remaining
        stub, check = stubs[index % len(stubs)], checks[index % len(checks)]
        while remaining > 0:
            remaining -= 1
            if health:
                await check.Check(health_pb2.HealthCheckRequest())
            else:
                await stub.ReportEvent(report_request(env), metadata=metadata)

    await asyncio.gather(*(caller(i) for i in range(callers)))
    for channel in channels:
        await channel.close()


def _report_process(
    address: str,
    env: dict[str, str],
    count: int,
    callers: int,
    health: bool,
    go: Any,
    ready: Any,
) -> None:
    ready.release()
    go.wait()
    asyncio.run(_report_calls(address, env, count, callers, health))


def report_throughput(
    address: str,
    env: dict[str, str],
    count: int,
    callers: int,
    processes: int = 4,
    health: bool = False,
) -> float:
    """Durable reports per second with ``callers`` calls in flight at all
    times, spread over a few client processes, as reports come from many
    workloads (one Python client process alone cannot saturate the server)."""
    per_process = callers // processes
    context = multiprocessing.get_context("spawn")
    go, ready = context.Event(), context.Semaphore(0)
    workers = [
        context.Process(
            target=_report_process,
            args=(address, env, count // processes, per_process, health, go, ready),
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    for worker in workers:
        worker.join(300)
        if worker.exitcode != 0:
            raise RuntimeError("a report client failed")
    return (count // processes * processes) / (time.perf_counter() - started)


async def watch_lag(
    address: str, env: dict[str, str], subscribers: int, rate: int, seconds: float
) -> tuple[float, list[float]]:
    """Delivered messages per second to ``subscribers`` and each event's lag
    (report acknowledged to received) at ``rate`` events per second."""
    metadata = (("authorization", f"Bearer {env['CORRAL_TOKEN']}"),)
    channel = grpc.aio.insecure_channel(address)
    operator = operator_pb2_grpc.OperatorServiceStub(channel)
    head = (
        await operator.GetOperatorInfo(operator_pb2.GetOperatorInfoRequest())
    ).event_sequence
    sent_at: dict[int, float] = {}
    lags: list[float] = []
    total = int(rate * seconds)
    delivered = 0

    sub_channels = [grpc.aio.insecure_channel(address) for _ in range(4)]

    async def subscriber(index: int, ready: asyncio.Event) -> None:
        nonlocal delivered
        stub = operator_pb2_grpc.OperatorServiceStub(sub_channels[index % 4])
        stream = stub.WatchEvents(operator_pb2.WatchEventsRequest(after_sequence=head))
        got = 0
        ready.set()
        async for item in stream:
            if not item.HasField("event"):
                continue
            now = time.perf_counter()
            sent = sent_at.get(item.event.sequence)
            if sent is not None:
                lags.append((now - sent) * 1000)
            got += 1
            delivered += 1
            if got == total:
                break
        stream.cancel()

    readies = [asyncio.Event() for _ in range(subscribers)]
    tasks = [asyncio.create_task(subscriber(i, readies[i])) for i in range(subscribers)]
    for ready in readies:
        await ready.wait()
    await asyncio.sleep(0.5)

    lifecycle = lifecycle_pb2_grpc.LifecycleServiceStub(channel)
    started = time.perf_counter()

    async def send(index: int) -> None:
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        before = time.perf_counter()
        reply = await lifecycle.ReportEvent(report_request(env), metadata=metadata)
        # The event exists from the moment the server committed it; the
        # midpoint of the call is a fair estimate of that moment.
        sent_at[reply.sequence] = (before + time.perf_counter()) / 2

    await asyncio.gather(*(send(i) for i in range(total)))
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    elapsed = time.perf_counter() - started
    for sub in sub_channels:
        await sub.close()
    await channel.close()
    return delivered / elapsed, lags


def measure(
    reports: int, callers: int, subscribers: int, rate: int, seconds: float
) -> EventResult:
    with tempfile.TemporaryDirectory(prefix="corral-bench-events-") as scratch:
        env_file = Path(scratch) / "env.json"
        with corral(fleet(env_file)) as server:
            server.start()
            env = wait_env(env_file)

            async def run() -> EventResult:
                per_s = await asyncio.to_thread(
                    report_throughput, server.address, env, reports, callers
                )
                ceiling = await asyncio.to_thread(
                    report_throughput, server.address, env, reports, callers, 4, True
                )
                delivered, lags = await watch_lag(
                    server.address, env, subscribers, rate, seconds
                )
                return EventResult(
                    reports=reports,
                    callers=callers,
                    reports_per_s=per_s,
                    ceiling_per_s=ceiling,
                    subscribers=subscribers,
                    rate=rate,
                    delivered_per_s=delivered,
                    lag_p50_ms=percentile(lags, 0.5),
                    lag_p99_ms=percentile(lags, 0.99),
                    lag_max_ms=max(lags) if lags else float("nan"),
                )

            return asyncio.run(run())


if __name__ == "__main__":
    print(measure(5000, 64, 100, 1000, 5))
