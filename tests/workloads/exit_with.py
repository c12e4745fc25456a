"""Test workload: exits at once with the code given as its first argument."""

import sys

sys.exit(int(sys.argv[1]))
