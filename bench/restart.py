"""Restart latency: exit of a crashing workload to the start of its
replacement, as the workload itself stamps them (CLOCK_MONOTONIC)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench.common import build_stamp, corral, read_stamps


def fleet_for(command: list[str], stamp_file: Path) -> str:
    """One crashing member, restarted at once (zero restart delay)."""
    return f"""
[operator]
reconcile_interval = "0s"

[[containers]]
name = "crasher"
command = {json.dumps(command)}
env = {{ STAMP_FILE = "{stamp_file}", STAMP_LIFE_MS = "20" }}
restart_policy.when = "always"
restart_policy.crash = {{ window = "1s", allowed_crashes = 100 }}
restart_policy.backoff = {{ initial = "0s", max = "1s" }}
"""


def wait_for_samples(stamp_file: Path, samples: int, timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stamp_file.exists():
            gaps = read_stamps(stamp_file)
            if len(gaps) >= samples:
                return gaps[:samples]
        time.sleep(0.05)
    raise RuntimeError(f"only {len(read_stamps(stamp_file))} restarts in {timeout}s")


def corral_restarts(samples: int) -> list[float]:
    """Exit-to-next-start gaps (ms) under corral's process runtime."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-stamp-") as scratch:
        workdir = Path(scratch)
        command = build_stamp(workdir)
        stamp_file = workdir / "stamps"
        with corral(fleet_for(command, stamp_file)) as server:
            server.start()
            return wait_for_samples(stamp_file, samples, timeout=60 + samples * 0.2)
