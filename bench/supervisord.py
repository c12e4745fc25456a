"""The same crashing workload under supervisord, configured for its fastest
restart (``autorestart=true``, ``startsecs=0``, ``startretries`` high)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import build_stamp, read_stamps

CONFIG = """
[supervisord]
nodaemon=true
logfile={workdir}/supervisord.log
pidfile={workdir}/supervisord.pid
childlogdir={workdir}

[program:crasher]
command={command}
environment=STAMP_FILE="{stamp_file}",STAMP_LIFE_MS="20"
autostart=true
autorestart=true
startsecs=0
startretries=1000000
stopsignal=KILL
"""


def supervisord_restarts(samples: int) -> list[float]:
    """Exit-to-next-start gaps (ms) under supervisord."""
    binary = Path(sys.executable).parent / "supervisord"
    with tempfile.TemporaryDirectory(prefix="corral-bench-supervisord-") as scratch:
        workdir = Path(scratch)
        command = " ".join(build_stamp(workdir))
        stamp_file = workdir / "stamps"
        config = workdir / "supervisord.conf"
        config.write_text(
            CONFIG.format(workdir=workdir, command=command, stamp_file=stamp_file)
        )
        process = subprocess.Popen(
            [str(binary), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30 + samples * 2.0
            while time.monotonic() < deadline:
                if stamp_file.exists() and len(read_stamps(stamp_file)) >= samples:
                    return read_stamps(stamp_file)[:samples]
                time.sleep(0.1)
            raise RuntimeError("supervisord restarted too few times")
        finally:
            # SIGTERM lets supervisord stop its child before it exits.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
