"""The cost of authentication on a unary call: GetOperatorInfo calls/s at
concurrency 16 against a corral with no tokens (open) and against one that
requires an admin token, measured in one run, rounds interleaved.

    .venv/bin/python -m bench.auth_cost [seconds-per-round]
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator

import grpc

from bench.common import QUICK, Corral, corral
from corral.v1 import operator_pb2, operator_pb2_grpc

CONCURRENCY = 16
ROUNDS = 2 if QUICK else 3
TOKEN = "bench-admin-token-5b2f0e9d7c4a1b3e"


async def calls_per_second(address: str, token: str | None, seconds: float) -> float:
    """GetOperatorInfo calls/s from CONCURRENCY callers on one channel."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    request = operator_pb2.GetOperatorInfoRequest()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = operator_pb2_grpc.OperatorServiceStub(channel)
        await stub.GetOperatorInfo(request, metadata=metadata)  # connect, and check
        done = 0
        deadline = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await stub.GetOperatorInfo(request, metadata=metadata)
                done += 1

        began = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        return done / (time.monotonic() - began)


@contextlib.contextmanager
def with_token() -> Iterator[Corral]:
    with corral('[operator]\nadmin_token_file = "tokens"\n') as instance:
        (instance.workdir / "tokens").write_text(TOKEN + "\n")
        yield instance


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else (1.5 if QUICK else 3.0)
    with corral("") as open_corral, with_token() as closed:
        open_corral.start()
        closed.start()
        rates: dict[str, list[float]] = {"no token": [], "admin token": []}
        for _ in range(ROUNDS):
            rates["no token"].append(
                asyncio.run(calls_per_second(open_corral.address, None, seconds))
            )
            rates["admin token"].append(
                asyncio.run(calls_per_second(closed.address, TOKEN, seconds))
            )
    print(
        f"auth cost: GetOperatorInfo, concurrency {CONCURRENCY}, "
        f"{ROUNDS} interleaved rounds of {seconds:g}s"
    )
    medians = {label: statistics.median(values) for label, values in rates.items()}
    for label, values in rates.items():
        shown = ", ".join(f"{value:,.0f}" for value in values)
        print(
            f"  {label:<12} {medians[label]:>9,.0f} calls/s (median; rounds: {shown})"
        )
    cost = 1 - medians["admin token"] / medians["no token"]
    print(f"  authentication costs {cost:.1%} of throughput")


if __name__ == "__main__":
    main()
