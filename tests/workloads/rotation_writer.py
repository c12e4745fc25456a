"""Test workload: writes a block to stdout, then one more line on SIGUSR1.

Usage: rotation_writer.py SIZE

Writes SIZE bytes of "x" and a newline, then waits. On SIGUSR1 it writes
"after rotation" and exits 0, which shows where its O_APPEND writes land once
the log file was truncated under it.
"""

import os
import signal
import sys


def _finish(signum: int, frame: object) -> None:
    os.write(1, b"after rotation\n")
    os._exit(0)


signal.signal(signal.SIGUSR1, _finish)
os.write(1, b"x" * int(sys.argv[1]) + b"\n")
while True:
    signal.pause()
