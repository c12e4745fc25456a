"""Test workload: sleeps for the seconds given (default an hour), then exits 0."""

import sys
import time

time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)
