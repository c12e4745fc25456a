"""Python stand-in for stamp.c where no C compiler is available."""

import os
import sys
import time

fd = os.open(os.environ["STAMP_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, f"S {time.monotonic_ns()}\n".encode())
time.sleep(int(os.environ.get("STAMP_LIFE_MS", "20")) / 1000)
os.write(fd, f"E {time.monotonic_ns()}\n".encode())
sys.exit(1)
