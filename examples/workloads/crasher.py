"""An example workload that fails: exits 1 shortly after every start.

Under the fleet file's ``on_failure`` policy corral restarts it with a short
backoff until the crash-loop breaker trips, then leaves it in CRASH_LOOP.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    """Pretends to start, then fails."""
    name = os.environ.get("CONTAINER_NAME", "crasher")
    print(f"{name}: starting, about to fail", flush=True)
    time.sleep(0.3)
    print(f"{name}: giving up with exit status 1", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
