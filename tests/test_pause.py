"""The pause program, run for real: natively, and under qemu-user for the
architecture this machine is not.

It must block until SIGTERM or SIGINT and then exit 0, so a sandbox stops at
once on a polite stop. ``.ci/run`` installs qemu-user-static; without it the
foreign architecture skips (and fails when ``CI`` is set).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from signal import SIGHUP, SIGINT, SIGTERM

import pytest

from corral.runtimes import pause

NATIVE = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "")
EMULATORS = {"amd64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static"}


def _command(architecture: str, program: Path) -> list[str]:
    if architecture == NATIVE:
        return [str(program)]
    emulator = shutil.which(EMULATORS[architecture])
    if emulator is None:
        message = (
            f"{EMULATORS[architecture]} is missing; apt-get install qemu-user-static"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return [emulator, str(program)]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.kill()
        process.wait()


def _blocked(process: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    """Waits until the process sleeps in a system call (its signal wait)."""
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{process.pid}/stat")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        fields = stat.read_text().rsplit(")", 1)[1].split()
        if fields[0] == "S":
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("architecture", sorted(pause.SUPPORTED_ARCHITECTURES))
@pytest.mark.parametrize("signal", [SIGTERM, SIGINT], ids=["SIGTERM", "SIGINT"])
def test_waits_for_a_stop_signal_then_exits_zero(
    architecture: str,
    signal: int,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    program = tmp_path / "pause"
    program.write_bytes(pause.program(architecture))
    program.chmod(0o755)
    process = subprocess.Popen(_command(architecture, program))
    started.append(process)

    assert _blocked(process), f"pause exited early with {process.returncode}"
    process.send_signal(signal)

    assert process.wait(timeout=10) == 0


def test_other_signals_take_their_default_action(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    if not NATIVE:
        pytest.skip(f"no native pause program for {platform.machine()}")
    program = tmp_path / "pause"
    program.write_bytes(pause.program(NATIVE))
    program.chmod(0o755)
    process = subprocess.Popen([str(program)])
    started.append(process)
    assert _blocked(process)

    process.send_signal(SIGHUP)

    assert process.wait(timeout=10) == -SIGHUP


def test_an_architecture_without_a_program_is_refused() -> None:
    with pytest.raises(ValueError, match="s390x"):
        pause.program("s390x")
    with pytest.raises(ValueError, match="s390x"):
        pause.image_archive("s390x")
