"""Shared pieces of the benchmarks: a real ``corral serve`` child, the
stamping workload, percentiles and cleanup of every process started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = Path(__file__).resolve().parent
QUICK = os.environ.get("BENCH_QUICK") == "1"


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; ``fraction`` in [0, 1]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_stamp(workdir: Path) -> list[str]:
    """Compiles the stamping workload; falls back to Python without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler:
        binary = workdir / "stamp"
        subprocess.run(
            [compiler, "-O2", "-o", str(binary), str(HERE / "stamp.c")], check=True
        )
        return [str(binary)]
    return [sys.executable, "-S", str(HERE / "stamp.py")]


def read_stamps(path: Path) -> list[float]:
    """Exit-to-next-start gaps in milliseconds from a stamp file."""
    gaps = []
    last_exit: int | None = None
    for line in path.read_text().splitlines():
        kind, _, value = line.partition(" ")
        if kind == "E":
            last_exit = int(value)
        elif kind == "S" and last_exit is not None:
            gaps.append((int(value) - last_exit) / 1e6)
            last_exit = None
    return gaps


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def kill_by_marker(marker: bytes) -> None:
    """SIGKILLs the process group of every process whose environment has ``marker``."""
    for _ in range(3):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                found = True
                with contextlib.suppress(OSError):
                    os.killpg(os.getpgid(int(entry)), signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.kill(int(entry), signal.SIGKILL)
        if not found:
            return
        time.sleep(0.1)


class Corral:
    """``corral serve`` on a fleet file, in a scratch directory."""

    def __init__(self, fleet: str, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config = workdir / "fleet.toml"
        self.config.write_text(fleet)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "corral.log"

    def start(self, timeout: float = 120.0) -> float:
        """Starts corral; returns seconds until it serves."""
        began = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from corral.cli import main; main()",
                    "serve",
                    "--config",
                    str(self.config),
                    "--data-dir",
                    str(self.workdir / "data"),
                    "--listen",
                    self.address,
                    "--log-level",
                    "warning",
                ],
                stdout=log,
                stderr=log,
            )
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() - began < timeout:
                if self.process.poll() is not None:
                    raise RuntimeError(f"corral exited:\n{self.log.read_text()}")
                with contextlib.suppress(grpc.RpcError):
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.monotonic() - began
                time.sleep(0.02)
        raise RuntimeError(f"corral did not serve:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        kill_by_marker(f"CORRAL_ADDR={self.address}".encode())


@contextlib.contextmanager
def corral(fleet: str) -> Iterator[Corral]:
    """A running corral that is killed, with its whole fleet, on exit."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as scratch:
        instance = Corral(fleet, Path(scratch))
        try:
            yield instance
        finally:
            instance.stop()
