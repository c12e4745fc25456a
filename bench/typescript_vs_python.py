"""The TypeScript SDK beside the Python SDK, against one server in one run.

Measures, for each client: the unary call rate (``GetOperatorInfo``, CALLS
calls over CONCURRENCY concurrent callers on one connection) and the watch
throughput (``WatchEvents`` from sequence 0, replaying a log of EVENTS
events), then prints one table.

The log is seeded with READY events: a ``sleep`` workload's own token (read
from its environment) sends STARTED reports, each of which appends one event.

    python -m bench.typescript_vs_python      # from the repository root

Needs ``npm ci`` done in sdk/typescript (``npm test`` does it through pytest).
``BENCH_QUICK=1`` shrinks the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import grpc

from bench.common import QUICK, corral
from corral.sdk import AsyncClient
from corral.v1 import lifecycle_pb2, lifecycle_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "sdk" / "typescript"
CALLS = 1_000 if QUICK else 5_000
CONCURRENCY = 16
EVENTS = 1_000 if QUICK else 5_000


def workload_environment(pid: int) -> dict[str, str]:
    """The environment corral gave the workload ``pid`` (its token included)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in environ if b"=" in item)


async def seed_events(address: str, count: int) -> int:
    """Appends about ``count`` events to the log; returns the head sequence."""
    async with AsyncClient(address) as client:
        container = await client.start_container(
            "bench-reporter", spec={"command": ["sleep", "600"]}
        )
        env = workload_environment(int(container.runtime_id))
        async with grpc.aio.insecure_channel(address) as channel:
            stub = lifecycle_pb2_grpc.LifecycleServiceStub(channel)
            metadata = (("authorization", f"Bearer {env['CORRAL_TOKEN']}"),)
            remaining = count

            async def reporter() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await stub.ReportEvent(
                        lifecycle_pb2.ReportEventRequest(
                            name="bench-reporter",
                            instance_id=env["CORRAL_INSTANCE_ID"],
                            event_id=str(uuid.uuid4()),
                            type=lifecycle_pb2.REPORT_TYPE_STARTED,
                        ),
                        metadata=metadata,
                    )

            await asyncio.gather(*(reporter() for _ in range(CONCURRENCY)))
        info = await client.get_operator_info()
        return int(info.event_sequence)


async def python_unary(address: str, calls: int) -> float:
    async with AsyncClient(address) as client:
        left = 0

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.get_operator_info()

        left = min(200, calls)  # warm-up
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        left = calls
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return calls / (time.perf_counter() - began)


async def python_watch(address: str, head: int) -> tuple[int, float]:
    async with AsyncClient(address) as client:
        count = 0
        began = time.perf_counter()
        watch = client.watch_events(after_sequence=0, resume=False)
        async for event in watch:
            count += 1
            if event.sequence >= head:
                break
        await watch.aclose()
        return count, count / (time.perf_counter() - began)


def typescript(address: str, head: int) -> dict[str, float]:
    if not (PACKAGE / "node_modules").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=PACKAGE, check=True
        )
    subprocess.run(["npm", "run", "build", "--silent"], cwd=PACKAGE, check=True)
    output = subprocess.run(
        [
            "node",
            "dist/bench/bench.js",
            address,
            str(CALLS),
            str(CONCURRENCY),
            str(head),
        ],
        cwd=PACKAGE,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    with corral('[operator]\nreconcile_interval = "0s"\n') as server:
        server.start()
        head = asyncio.run(seed_events(server.address, EVENTS))
        py_unary = asyncio.run(python_unary(server.address, CALLS))
        py_events, py_watch = asyncio.run(python_watch(server.address, head))
        ts = typescript(server.address, head)

    print(
        f"corral: {CALLS} x GetOperatorInfo at concurrency {CONCURRENCY}; "
        f"WatchEvents replaying {head} events "
        f"(one server, one run, {os.cpu_count()} CPUs)"
    )
    print(f"{'client':<34} {'unary calls/s':>14} {'watch events/s':>15}")
    rows = [
        ("Python SDK (corral.sdk, asyncio)", py_unary, py_watch, py_events),
        (
            "TypeScript SDK (@corral/sdk)",
            ts["unary_per_s"],
            ts["watch_per_s"],
            int(ts["watch_events"]),
        ),
    ]
    for name, unary, watch, events in rows:
        assert events == head, f"{name} saw {events} events, expected {head}"
        print(f"{name:<34} {unary:>14,.0f} {watch:>15,.0f}")


if __name__ == "__main__":
    main()
