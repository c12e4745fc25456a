"""The TypeScript SDK's own suite (``npm test`` in sdk/typescript), run by pytest.

``npm ci`` runs only when ``node_modules`` is missing or ``package-lock.json``
changed since the last install (a hash stamp in ``node_modules``). The npm
suite starts its own ``corral serve`` children and kills their workloads.
Without node and npm the test skips locally and fails in CI (``CI`` set).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO

PACKAGE = REPO / "sdk" / "typescript"
STAMP = PACKAGE / "node_modules" / ".corral-lock.sha256"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not on PATH; the TypeScript SDK tests need Node.js 20+"
        if os.environ.get("CI"):
            pytest.fail(f"TypeScript SDK tests must run in CI: {message}")
        pytest.skip(message)
    return path


def _run(command: list[str], env: dict[str, str], timeout: float) -> None:
    result = subprocess.run(
        command,
        cwd=PACKAGE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} failed ({result.returncode}):\n"
        f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    )


def test_typescript_sdk_suite_passes_against_a_real_server() -> None:
    npm = _require("npm")
    _require("node")
    env = {**os.environ, "CORRAL_BIN": str(Path(sys.executable).parent / "corral")}

    lock = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != lock:
        _run([npm, "ci", "--no-audit", "--no-fund"], env, timeout=600)
        STAMP.write_text(lock + "\n")

    _run([npm, "test"], env, timeout=600)
