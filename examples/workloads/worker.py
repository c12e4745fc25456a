"""An example worker: reads its settings and a secret from the environment.

``WORKER_QUEUE`` and ``WORKER_CONCURRENCY`` come from the environment
builder (``examples/envbuilder.py``), ``WORKER_API_KEY`` from the operator's
secret of that name. The secret itself is never printed, only its length.
Runs until SIGTERM, then exits 0 (a clean stop).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> int:
    """Announces its configuration, then works until told to stop."""
    queue = os.environ.get("WORKER_QUEUE", "")
    concurrency = os.environ.get("WORKER_CONCURRENCY", "")
    api_key = os.environ.get("WORKER_API_KEY", "")
    name = os.environ.get("CONTAINER_NAME", "worker")
    if not queue or not api_key:
        print(f"{name}: missing WORKER_QUEUE or WORKER_API_KEY", file=sys.stderr)
        return 1

    print(
        f"{name}: got queue={queue} concurrency={concurrency} "
        f"api key of {len(api_key)} characters",
        flush=True,
    )

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    ticks = 0
    while not stopping:
        time.sleep(0.2)
        ticks += 1
        if ticks % 50 == 0:
            print(f"{name}: still working on {queue}", flush=True)

    print(f"{name}: stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
