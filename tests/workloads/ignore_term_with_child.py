"""Test workload: ignores SIGTERM and forks a child that ignores it too.

Usage: ignore_term_with_child.py READY_FILE [EXIT_CODE]

Once both ignore SIGTERM it writes "<leader pid> <child pid>" to READY_FILE
(atomically, through a rename). Then the leader waits forever, or, given
EXIT_CODE, exits with it at once and leaves its child behind.
"""

import os
import signal
import sys

signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = os.fork()
if child == 0:
    while True:
        signal.pause()

ready = sys.argv[1]
with open(ready + ".tmp", "w") as file:
    file.write(f"{os.getpid()} {child}")
os.replace(ready + ".tmp", ready)

if len(sys.argv) > 2:
    sys.exit(int(sys.argv[2]))
while True:
    signal.pause()
