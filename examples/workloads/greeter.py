"""An example workload that reports its own lifecycle through corral's SDK.

It reports STARTED once it is ready (corral then shows it as ready), greets
every few seconds, and reports STOPPED when corral stops it with SIGTERM.
"""

import time

from corral.sdk import StopInfo, Workload

workload = Workload()


@workload.on_start
def prepare() -> None:
    print("greeter: ready", flush=True)


@workload.on_stop
def goodbye(info: StopInfo) -> None:
    print(f"greeter: stopping ({info.reason}, exit {info.exit_code})", flush=True)


def main() -> None:
    while True:
        print("greeter: hello", flush=True)
        time.sleep(5)


if __name__ == "__main__":
    workload.run(main)
