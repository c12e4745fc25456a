"""The process runtime against real processes.

Every process a test starts is registered with the ``harness`` fixture, which
closes the runtimes and SIGKILLs the process groups in teardown, whatever the
test's outcome. Waiting is done on futures, or by polling a condition with a
deadline, never by a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from corral.core.model import ContainerSpec, ExitReason
from corral.runtimes import (
    LaunchRequest,
    ProcessRuntime,
    RuntimeHandle,
    WorkloadStartError,
)
from tests.harness import ExitRecorder

WORKLOADS = Path(__file__).parent / "workloads"
TIMEOUT = 10.0


def workload(script: str, *args: str) -> tuple[str, ...]:
    """The argv running one of the helper scripts in tests/workloads."""
    return (sys.executable, str(WORKLOADS / script), *args)


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False

    return stat[stat.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def start_time_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Polls ``predicate`` until it holds, failing after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


@dataclasses.dataclass
class Harness:
    """Creates runtimes and processes and remembers them for the teardown."""

    tmp_path: Path
    # Monotonic times: the latency figure subtracts perf_counter readings.
    exits: ExitRecorder = dataclasses.field(
        default_factory=functools.partial(ExitRecorder, time.perf_counter)
    )
    runtimes: list[ProcessRuntime] = dataclasses.field(default_factory=list)
    recorders: list[ExitRecorder] = dataclasses.field(default_factory=list)
    groups: set[int] = dataclasses.field(default_factory=set)
    pids: set[int] = dataclasses.field(default_factory=set)

    @property
    def log_dir(self) -> Path:
        return self.tmp_path / "logs"

    def runtime(
        self, exits: ExitRecorder | None = None, **options: Any
    ) -> ProcessRuntime:
        recorder = exits if exits is not None else self.exits
        runtime = ProcessRuntime(log_dir=self.log_dir, on_exit=recorder, **options)
        self.runtimes.append(runtime)
        self.recorders.append(recorder)
        return runtime

    async def start(
        self,
        runtime: ProcessRuntime,
        command: Sequence[str],
        *,
        name: str = "w",
        env: dict[str, str] | None = None,
        working_dir: str = "",
    ) -> tuple[RuntimeHandle, str]:
        instance_id = uuid.uuid4().hex
        request = LaunchRequest(
            name=name,
            instance_id=instance_id,
            spec=ContainerSpec(command=tuple(command), working_dir=working_dir),
            env=env if env is not None else {"CORRAL_INSTANCE_ID": instance_id},
        )
        handle = await runtime.start(request)
        self.groups.add(int(handle.runtime_id))
        return handle, instance_id

    def track(self, pid: int) -> None:
        self.pids.add(pid)

    async def cleanup(self) -> None:
        for runtime in self.runtimes:
            await runtime.close()
        self.kill_all()

    def kill_all(self) -> None:
        for pgid in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for pid in self.pids | self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            # Leaders left behind by a closed runtime are still our children.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def read_text(path: Path | str) -> str:
    return Path(path).read_text()


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that corral did not start."""
    process = subprocess.Popen(["/usr/bin/sleep", "3600"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def zombie() -> Iterator[subprocess.Popen[bytes]]:
    """A child that exits at once and is reaped only at teardown."""
    process = subprocess.Popen(["/usr/bin/true"])
    yield process
    process.wait()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        await harness.cleanup()
    for recorder in harness.recorders:
        instance_ids = [iid for _, iid, _ in recorder.calls]
        assert len(instance_ids) == len(set(instance_ids)), "on_exit called twice"


async def test_exit_code_is_reported(harness: Harness) -> None:
    runtime = harness.runtime()

    _, instance_id = await harness.start(runtime, workload("exit_with.py", "3"))
    exit = await harness.exits.wait(instance_id)

    assert exit.reason is ExitReason.EXITED
    assert exit.exit_code == 3
    assert exit.signal is None
    assert exit.instance_id == instance_id
    assert harness.exits.calls[0][:2] == ("w", instance_id)
    assert not runtime.is_running("w", instance_id)


async def test_killing_signal_is_reported(harness: Harness) -> None:
    runtime = harness.runtime()
    handle, instance_id = await harness.start(runtime, workload("sleeper.py"))
    assert runtime.is_running("w", instance_id)

    os.kill(int(handle.runtime_id), signal.SIGTERM)
    exit = await harness.exits.wait(instance_id)

    assert exit.reason is ExitReason.SIGNALED
    assert exit.signal == signal.SIGTERM
    assert exit.exit_code is None


async def test_handle_identifies_the_process(harness: Harness) -> None:
    runtime = harness.runtime()

    # The first start reads the start time from /proc, later ones derive it.
    for _ in range(3):
        handle, instance_id = await harness.start(runtime, workload("sleeper.py"))
        pid = int(handle.runtime_id)
        identity = json.loads(handle.identity)

        assert identity["pid"] == pid
        assert identity["start_time"] == start_time_of(pid)
        assert identity["instance_id"] == instance_id
        assert os.getpgid(pid) == pid
        assert os.getsid(pid) == pid
        assert handle.started_at.tzinfo is not None


async def test_missing_command_is_a_start_error_naming_it(harness: Harness) -> None:
    runtime = harness.runtime()

    with pytest.raises(WorkloadStartError) as error:
        await harness.start(runtime, ["corral-no-such-command"])

    message = str(error.value)
    assert "command 'corral-no-such-command' not found" in message
    assert "No such file or directory" in message
    assert "spec.command" in message


async def test_non_executable_file_is_a_start_error(harness: Harness) -> None:
    runtime = harness.runtime()
    script = harness.tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)

    with pytest.raises(WorkloadStartError) as error:
        await harness.start(runtime, [str(script)])

    assert f"command '{script}' is not executable" in str(error.value)
    assert "Permission denied" in str(error.value)


async def test_bad_working_dir_is_a_start_error_naming_it(harness: Harness) -> None:
    runtime = harness.runtime()
    missing = str(harness.tmp_path / "missing")

    with pytest.raises(WorkloadStartError) as error:
        await harness.start(runtime, workload("sleeper.py"), working_dir=missing)

    assert f"working directory '{missing}' cannot be used" in str(error.value)
    assert "spec.working_dir" in str(error.value)


async def test_empty_command_is_a_start_error(harness: Harness) -> None:
    runtime = harness.runtime()

    with pytest.raises(WorkloadStartError, match=r"spec\.command is empty"):
        await harness.start(runtime, [])


async def test_working_dir_is_the_processes_cwd(harness: Harness) -> None:
    runtime = harness.runtime()

    handle, _ = await harness.start(
        runtime, workload("sleeper.py"), working_dir=str(harness.tmp_path)
    )

    assert os.readlink(f"/proc/{handle.runtime_id}/cwd") == str(harness.tmp_path)


async def test_env_is_exactly_the_given_one(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_TEST_MUST_NOT_LEAK", "1")
    runtime = harness.runtime()
    env = {"CORRAL_INSTANCE_ID": "env-test", "ONLY": "this", "EMPTY": ""}

    handle, _ = await harness.start(runtime, ["/usr/bin/sleep", "3600"], env=env)
    environ = Path(f"/proc/{handle.runtime_id}/environ")
    # start() returns as exec begins; the new environment is mapped a moment later.
    await wait_until(lambda: read_text(environ) != "", "exec has completed")

    entries = [entry.partition("=") for entry in read_text(environ).split("\0")]
    assert {key: value for key, _, value in entries if key} == env


async def test_bare_command_is_looked_up_in_the_given_path(harness: Harness) -> None:
    runtime = harness.runtime()
    env = {"PATH": str(harness.tmp_path)}

    with pytest.raises(WorkloadStartError, match="command 'sleep' not found"):
        await harness.start(runtime, ["sleep", "3600"], env=env)


async def test_stop_kills_a_term_ignoring_leader_and_its_child_after_the_grace(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    ready = harness.tmp_path / "ready"
    command = workload("ignore_term_with_child.py", str(ready))
    handle, instance_id = await harness.start(runtime, command)
    await wait_until(ready.exists, "the workload has forked its child")
    leader, child = map(int, ready.read_text().split())
    harness.track(child)
    assert leader == int(handle.runtime_id)

    began = time.monotonic()
    await runtime.stop("w", instance_id, signal.SIGTERM, 0.5)
    elapsed = time.monotonic() - began

    assert elapsed >= 0.45, "SIGTERM was ignored, so the grace must have run out"
    assert not is_alive(leader)
    await wait_until(lambda: not is_alive(child), "the child is gone")
    exit = await harness.exits.wait(instance_id)
    assert exit.reason is ExitReason.SIGNALED
    assert exit.signal == signal.SIGKILL
    assert not runtime.is_running("w", instance_id)


async def test_stop_returns_as_soon_as_the_workload_obeys(harness: Harness) -> None:
    runtime = harness.runtime()
    _, instance_id = await harness.start(runtime, workload("sleeper.py"))

    began = time.monotonic()
    await runtime.stop("w", instance_id, signal.SIGTERM, 30.0)

    assert time.monotonic() - began < 5.0
    exit = await harness.exits.wait(instance_id)
    assert exit.signal == signal.SIGTERM


async def test_children_left_behind_by_an_exited_leader_are_killed(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    ready = harness.tmp_path / "ready"
    command = workload("ignore_term_with_child.py", str(ready), "0")

    _, instance_id = await harness.start(runtime, command)
    exit = await harness.exits.wait(instance_id)
    _, child = map(int, ready.read_text().split())
    harness.track(child)

    assert exit.reason is ExitReason.EXITED
    assert exit.exit_code == 0
    await wait_until(lambda: not is_alive(child), "the straggler is gone")


async def test_stop_of_an_ended_or_unknown_instance_does_nothing(
    harness: Harness,
) -> None:
    runtime = harness.runtime()
    _, instance_id = await harness.start(runtime, workload("exit_with.py", "0"))
    await harness.exits.wait(instance_id)

    await runtime.stop("w", instance_id, signal.SIGTERM, 5.0)
    await runtime.stop("w", "no-such-instance", signal.SIGTERM, 5.0)

    assert harness.exits.count(instance_id) == 1


async def test_adopt_after_restart_watches_the_process_and_reports_unknown_exit(
    harness: Harness,
) -> None:
    first = harness.runtime()
    handle, instance_id = await harness.start(first, workload("sleeper.py"))
    pid = int(handle.runtime_id)
    await first.close()
    assert is_alive(pid), "close() must leave the workloads running"

    adopted_exits = ExitRecorder()
    second = harness.runtime(adopted_exits)
    adopted = await second.adopt("w", instance_id, handle.runtime_id, handle.identity)

    assert adopted is not None
    assert adopted.runtime_id == handle.runtime_id
    assert abs((adopted.started_at - handle.started_at).total_seconds()) < 2.5
    assert second.is_running("w", instance_id)
    os.kill(pid, signal.SIGKILL)
    exit = await adopted_exits.wait(instance_id)
    assert exit.reason is ExitReason.UNKNOWN
    assert exit.message == "exit status unavailable: instance was adopted"
    assert not second.is_running("w", instance_id)
    assert harness.exits.count(instance_id) == 0


async def test_adopt_refuses_a_pid_whose_start_time_does_not_match(
    harness: Harness, other_process: subprocess.Popen[bytes]
) -> None:
    runtime = harness.runtime()
    pid = other_process.pid
    forged = json.dumps({"pid": pid, "start_time": start_time_of(pid) - 1})

    adopted = await runtime.adopt("w", "reused", str(pid), forged)

    assert adopted is None
    assert not runtime.is_running("w", "reused")
    assert is_alive(pid), "adopt must not touch the other process"


async def test_adopt_refuses_a_zombie(
    harness: Harness, zombie: subprocess.Popen[bytes]
) -> None:
    runtime = harness.runtime()
    identity = json.dumps({"pid": zombie.pid, "start_time": start_time_of(zombie.pid)})
    await wait_until(lambda: not is_alive(zombie.pid), "the child is a zombie")

    assert await runtime.adopt("w", "z", str(zombie.pid), identity) is None


async def test_adopt_refuses_a_missing_pid(harness: Harness) -> None:
    runtime = harness.runtime()
    identity = json.dumps({"pid": 2**22 + 1, "start_time": 1})

    assert await runtime.adopt("w", "gone", str(2**22 + 1), identity) is None
    assert await runtime.adopt("w", "bad", "not-a-pid", identity) is None


async def test_adopt_finds_an_unrecorded_instance_by_its_environment(
    harness: Harness,
) -> None:
    first = harness.runtime()
    handle, instance_id = await harness.start(first, workload("sleeper.py"))
    await first.close()

    adopted_exits = ExitRecorder()
    second = harness.runtime(adopted_exits)
    adopted = await second.adopt("w", instance_id, "", "")

    assert adopted is not None
    assert adopted.runtime_id == handle.runtime_id
    assert await second.adopt("w", uuid.uuid4().hex, "", "") is None
    await second.stop("w", instance_id, signal.SIGTERM, 5.0)
    assert not is_alive(int(handle.runtime_id))
    exit = await adopted_exits.wait(instance_id)
    assert exit.reason is ExitReason.UNKNOWN


async def test_log_receives_stdout_and_stderr_appended(harness: Harness) -> None:
    runtime = harness.runtime()
    command = workload("write_output.py", "to stdout", "to stderr")

    for _ in range(2):
        _, instance_id = await harness.start(runtime, command)
        await harness.exits.wait(instance_id)

    assert runtime.log_path("w") == harness.log_dir / "w.log"
    lines = runtime.log_path("w").read_text().splitlines()
    assert sorted(lines) == sorted(["to stdout", "to stderr"] * 2)


async def test_rotation_keeps_the_newest_data_and_respects_log_backups(
    harness: Harness,
) -> None:
    runtime = harness.runtime(log_max_bytes=100, log_backups=2, rotate_interval=3600)
    await harness.start(runtime, workload("sleeper.py"))
    log = runtime.log_path("w")

    for generation in "abc":
        with log.open("a") as file:
            file.write(generation * 200)
        await runtime.rotate_logs()
    with log.open("a") as file:
        file.write("d" * 50)
    await runtime.rotate_logs()

    assert log.read_text() == "d" * 50, "a log under the limit is left alone"
    assert read_text(f"{log}.1") == "c" * 200
    assert read_text(f"{log}.2") == "b" * 200
    assert not log.with_name("w.log.3").exists()


async def test_rotation_lets_the_workload_keep_appending(harness: Harness) -> None:
    runtime = harness.runtime(log_max_bytes=1000, rotate_interval=3600)
    handle, instance_id = await harness.start(
        runtime, workload("rotation_writer.py", "4096")
    )
    log = runtime.log_path("w")
    await wait_until(lambda: log.stat().st_size > 4096, "the block is written")

    await runtime.rotate_logs()
    os.kill(int(handle.runtime_id), signal.SIGUSR1)
    await harness.exits.wait(instance_id)

    assert log.read_text() == "after rotation\n"
    assert read_text(f"{log}.1") == "x" * 4096 + "\n"


async def test_rotation_runs_in_the_background(harness: Harness) -> None:
    runtime = harness.runtime(log_max_bytes=100, rotate_interval=0.05)
    await harness.start(runtime, workload("sleeper.py"))
    log = runtime.log_path("w")

    with log.open("a") as file:
        file.write("z" * 200)

    backup = log.with_name("w.log.1")
    await wait_until(backup.exists, "the background task rotated the log")
    await wait_until(lambda: log.stat().st_size == 0, "the log is truncated")


async def test_latency_from_exit_to_callback(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = harness.runtime()
    starts: list[float] = []
    latencies: list[float] = []

    for _ in range(5):
        began = time.perf_counter()
        handle, instance_id = await harness.start(runtime, ["/usr/bin/sleep", "3600"])
        starts.append(time.perf_counter() - began)
        killed = time.perf_counter()
        os.kill(int(handle.runtime_id), signal.SIGKILL)
        await harness.exits.wait(instance_id)
        latencies.append(harness.exits.times[instance_id] - killed)

    with capsys.disabled():
        print(
            f"\nprocess runtime: start() median {sorted(starts)[2] * 1e3:.2f} ms, "
            f"SIGKILL to on_exit median {sorted(latencies)[2] * 1e3:.2f} ms"
        )
    assert max(latencies) < TIMEOUT
