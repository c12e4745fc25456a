"""``make bench``: corral beside the supervisors people use, in one run.

Prints one table. ``BENCH_QUICK=1`` prints the same rows from fewer samples
(under 45 s). Absolute figures depend on the machine; the ratios between
supervisors measured in the same run are what carries over.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from bench.common import QUICK, percentile


def _docker_available() -> bool:
    if os.environ.get("BENCH_DOCKER") == "0":
        return False
    try:
        from bench.docker_restart import docker_available
    except ImportError:
        return False
    return docker_available()


def _row(label: str, gaps: Sequence[float]) -> str:
    return (
        f"  {label:<34} {len(gaps):>5}  {statistics.median(gaps):>9.2f} "
        f"{percentile(gaps, 0.9):>9.2f} {percentile(gaps, 0.99):>9.2f} "
        f"{max(gaps):>9.2f}"
    )


T = TypeVar("T")


def _ratio(value: float) -> str:
    return f"{value:.0f}x" if value >= 10 else f"{value:.2f}x"


def _timed(what: str, run: Callable[[], T]) -> T:
    started = time.monotonic()
    print(f"# measuring {what} ...", file=sys.stderr, flush=True)
    result = run()
    print(f"#   {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return result


def main() -> None:
    from bench import events, restart, scale, supervisord

    began = time.monotonic()
    restart_samples = 60 if QUICK else 500
    supervisord_samples = 2 if QUICK else 20
    scales = (100, 1000, 5000)
    list_samples = 3 if QUICK else 20
    reports = 2000 if QUICK else 20000
    watch_seconds = 1.5 if QUICK else 10.0

    # Restart latency beside the peers.
    latencies: dict[str, list[float]] = {}
    latencies["corral (process runtime)"] = _timed(
        "corral restarts", lambda: restart.corral_restarts(restart_samples)
    )
    latencies["supervisord"] = _timed(
        "supervisord restarts",
        lambda: supervisord.supervisord_restarts(supervisord_samples),
    )
    if _docker_available():
        from bench import docker_restart

        docker = _timed(
            "docker restarts",
            lambda: docker_restart.measure(3 if QUICK else 30),
        )
        latencies.update(docker)

    # Scale, then events.
    def measure_scale(count: int) -> scale.ScaleResult:
        return scale.measure(count, list_samples)

    scaled = [
        _timed(f"{count} containers", functools.partial(measure_scale, count))
        for count in scales
    ]
    event = _timed(
        "events",
        lambda: events.measure(
            reports, 64, 100, [(10, 1000), (100, 100)], watch_seconds
        ),
    )

    # The table.
    print(f"corral benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )
    print(f"command: {'BENCH_QUICK=1 ' if QUICK else ''}make bench")
    print()
    print("restart latency: a workload's exit to its replacement's start (ms)")
    print(f"  {'supervisor':<34} {'n':>5}  {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}")
    for label, gaps in latencies.items():
        print(_row(label, gaps))
    base = statistics.median(latencies["corral (process runtime)"])
    for label, gaps in latencies.items():
        if label.startswith("corral (process"):
            continue
        peer = statistics.median(gaps)
        reference = base
        if "docker" in label and "corral (docker runtime)" in latencies:
            reference = statistics.median(latencies["corral (docker runtime)"])
            if label.startswith("corral"):
                continue
        print(
            f"restart p50: corral {reference:.1f} ms, {label} {peer:.1f} ms "
            f"({_ratio(peer / reference)})"
        )
    print()
    print("scale: min replica set of N containers (process runtime)")
    print(
        f"  {'N':>6} {'all running':>12} {'reconcile':>10} {'list p50':>9} "
        f"{'list p99':>9} {'memory':>8}"
    )
    for result in scaled:
        print(
            f"  {result.containers:>6} {result.all_running_s:>10.2f} s "
            f"{result.reconcile_ms:>7.1f} ms {result.list_p50_ms:>6.1f} ms "
            f"{result.list_p99_ms:>6.1f} ms {result.rss_mb:>5.0f} MB"
        )
    print()
    print("events")
    print(
        f"  ReportEvent, {event.callers} concurrent callers: "
        f"{event.reports_per_s:,.0f} durable reports/s"
    )
    print(
        f"  gRPC ceiling here (Health.Check, same callers): "
        f"{event.ceiling_per_s:,.0f} calls/s"
    )
    print(
        f"  WatchEvents fan-out, {event.subscribers} subscribers each reading the "
        f"same {event.fanout_events:,} events: {event.delivered_per_s:,.0f} messages/s"
    )
    for lag in event.lags:
        print(
            f"  WatchEvents live, {lag.subscribers} subscribers at {lag.rate} events/s "
            f"({lag.subscribers * lag.rate:,} messages/s): "
            f"lag p50 {lag.p50_ms:.1f} ms, p99 {lag.p99_ms:.1f} ms, "
            f"max {lag.max_ms:.1f} ms"
        )
    print()
    print(
        "settings: defaults everywhere except a zero restart delay "
        "(backoff.initial = 0s) for the restart rows, and a crash-loop window "
        "loose enough that the breaker never trips while they run"
    )
    print(f"total: {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
