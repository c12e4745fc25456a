"""Scale: N members of the min replica set, from corral's start to all
running; one reconciliation pass; ListContainers over all of them; memory."""

from __future__ import annotations

import dataclasses
import statistics
import time

import grpc

from bench.common import corral, percentile, rss_mb
from corral.v1 import container_pb2, operator_pb2, operator_pb2_grpc


@dataclasses.dataclass
class ScaleResult:
    containers: int
    all_running_s: float
    reconcile_ms: float
    list_p50_ms: float
    list_p99_ms: float
    rss_mb: float


def fleet_of(count: int) -> str:
    lines = ['[operator]\nreconcile_interval = "0s"\n']
    for index in range(count):
        lines.append(
            f'[[containers]]\nname = "c{index:05d}"\ncommand = ["sleep", "3600"]\n'
        )
    return "\n".join(lines)


def list_all(
    stub: operator_pb2_grpc.OperatorServiceStub,
) -> list[container_pb2.Container]:
    containers: list[container_pb2.Container] = []
    token = ""
    while True:
        page = stub.ListContainers(
            operator_pb2.ListContainersRequest(page_size=1000, page_token=token),
            timeout=60,
        )
        containers.extend(page.containers)
        token = page.next_page_token
        if not token:
            return containers


def measure(count: int, list_samples: int) -> ScaleResult:
    with corral(fleet_of(count)) as server:
        began = time.monotonic()
        server.start(timeout=300)
        with grpc.insecure_channel(server.address) as channel:
            stub = operator_pb2_grpc.OperatorServiceStub(channel)
            running = container_pb2.CONTAINER_STATE_RUNNING
            while True:
                containers = list_all(stub)
                if len(containers) == count and all(
                    c.state == running for c in containers
                ):
                    break
                if time.monotonic() - began > 300:
                    raise RuntimeError("containers did not all run within 300 s")
                time.sleep(0.05)
            all_running = time.monotonic() - began

            started = time.perf_counter()
            stub.ReconcileFleet(operator_pb2.ReconcileFleetRequest(), timeout=120)
            reconcile_ms = (time.perf_counter() - started) * 1000

            timings = []
            for _ in range(list_samples):
                started = time.perf_counter()
                list_all(stub)
                timings.append((time.perf_counter() - started) * 1000)
            assert server.process is not None
            memory = rss_mb(server.process.pid)
        return ScaleResult(
            containers=count,
            all_running_s=all_running,
            reconcile_ms=reconcile_ms,
            list_p50_ms=statistics.median(timings),
            list_p99_ms=percentile(timings, 0.99),
            rss_mb=memory,
        )
