"""The SDK installed alone in a fresh virtual environment: it imports and
talks to corral without any of the server's dependencies."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import REPO, ServerFactory

SCRIPT = """
    import importlib.util, sys

    import corral.sdk
    import corral.v1
    from corral.sdk import Client, ContainerNotFoundError

    server_only = ["sqlalchemy", "alembic", "click", "corral.core", "corral.api"]
    present = [name for name in server_only if importlib.util.find_spec(name)]
    assert not present, f"server dependencies importable: {present}"

    with Client(sys.argv[1]) as corral:
        info = corral.get_operator_info()
        try:
            corral.get_container("absent")
        except ContainerNotFoundError as error:
            reason = error.reason
    print(info.runtime, reason)
"""


async def run(*command: str | Path, cwd: Path, timeout: float = 600) -> str:
    """Runs ``command`` with a clean environment; returns its output or fails."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.pop("VIRTUAL_ENV", None)
    process = await asyncio.create_subprocess_exec(
        *map(str, command),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{command} failed:\n{text}"
    return text


@pytest.mark.slow
async def test_the_sdk_installs_and_works_without_the_server(
    servers: ServerFactory, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    await run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    await run(python, "-m", "pip", "install", "--quiet", REPO / "sdk", cwd=tmp_path)

    h = await servers.start()
    script = tmp_path / "uses_sdk.py"
    script.write_text(textwrap.dedent(SCRIPT))
    output = await run(python, script, h.address, cwd=tmp_path, timeout=60)

    assert output.split() == ["process", "CONTAINER_NOT_FOUND"]
