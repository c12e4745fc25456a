"""Every command in docs/grpcurl.md runs against a live server, in order.

Each ```sh block of the guide is one command. The test puts the live server's
address in place of ``127.0.0.1:50051`` and ``.venv/bin`` first on ``PATH``,
runs the block with bash, and checks its exit status: 0, or, for a block
whose first line is ``# expect: <gRPC code>``, grpcurl's status for that code
(64 plus the code's number) with the code named in the output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import REPO, CorralProcess

GUIDE = REPO / "docs" / "grpcurl.md"
DOC_ADDRESS = "127.0.0.1:50051"
BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"^# expect: (\w+)\n")

# grpcurl exits with 64 + the status code's number when the RPC fails.
CODES = {
    "Canceled": 1,
    "Unknown": 2,
    "InvalidArgument": 3,
    "DeadlineExceeded": 4,
    "NotFound": 5,
    "AlreadyExists": 6,
    "PermissionDenied": 7,
    "ResourceExhausted": 8,
    "FailedPrecondition": 9,
    "Aborted": 10,
    "OutOfRange": 11,
    "Unimplemented": 12,
    "Internal": 13,
    "Unavailable": 14,
    "DataLoss": 15,
    "Unauthenticated": 16,
}

FLEET = f"""
[operator]
heartbeat_interval = "1s"

[[containers]]
name = "web"
command = ["{sys.executable}", "-c", "import time; time.sleep(300)"]
"""


@dataclass(frozen=True)
class Command:
    line: int
    script: str
    expect: str | None


def guide_commands() -> list[Command]:
    text = GUIDE.read_text()
    commands = []
    for match in BLOCK.finditer(text):
        script = match.group(1)
        expect = EXPECT.match(script)
        commands.append(
            Command(
                line=text.count("\n", 0, match.start()) + 1,
                script=script,
                expect=expect.group(1) if expect else None,
            )
        )
    return commands


def test_the_guide_covers_what_a_grpcurl_user_needs() -> None:
    commands = guide_commands()
    scripts = "\n".join(c.script for c in commands)
    for needed in (
        " list",
        "describe corral.v1.ContainerSpec",
        "OperatorService/StartContainer",
        "OperatorService/StopContainer",
        "-format-error",
        " -v ",
        "OperatorService/WatchEvents",
    ):
        assert needed in scripts, f"the guide has no command with {needed!r}"
    for command in commands:
        assert DOC_ADDRESS in command.script, f"line {command.line}: no address"
        if command.expect is not None:
            assert command.expect in CODES, f"line {command.line}: unknown code"


def test_every_command_in_the_grpcurl_guide_runs(
    tmp_path: Path, workload_addresses: set[str]
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(FLEET)
    server = CorralProcess(config, tmp_path / "data", workload_addresses)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    server.start()
    try:
        for command in guide_commands():
            _run(command, server.address, env, tmp_path)
    finally:
        server.kill()


def _run(command: Command, address: str, env: dict[str, str], cwd: Path) -> None:
    where = f"docs/grpcurl.md line {command.line}"
    script = command.script.replace(DOC_ADDRESS, address)
    try:
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: did not finish within 30s:\n{script}")
    output = result.stdout + result.stderr

    if command.expect is None:
        assert result.returncode == 0, f"{where} failed:\n{script}\n{output}"
        return
    code = CODES[command.expect]
    assert result.returncode == 64 + code, (
        f"{where}: expected {command.expect} (exit {64 + code}), "
        f"got exit {result.returncode}:\n{script}\n{output}"
    )
    assert f"Code: {command.expect}" in output or f'"code": {code}' in output, (
        f"{where}: the output does not name {command.expect}:\n{output}"
    )
