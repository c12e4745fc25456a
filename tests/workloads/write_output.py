"""Test workload: writes to stdout and stderr, then exits 0.

Usage: write_output.py STDOUT_TEXT STDERR_TEXT
"""

import sys

sys.stdout.write(sys.argv[1] + "\n")
sys.stdout.flush()
sys.stderr.write(sys.argv[2] + "\n")
sys.stderr.flush()
