"""grpcurl reaches corral through server reflection, with no proto files."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.harness import REPO, ServerFactory

GRPCURL = Path(sys.executable).parent / "grpcurl"


async def grpcurl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_grpcurl_lists_services_and_calls_methods(servers: ServerFactory) -> None:
    fleet = f"""
[[containers]]
name = "web"
command = {json.dumps([sys.executable, "-c", "import time; time.sleep(300)"])}
"""
    h = await servers.start(fleet)

    code, out, err = await grpcurl("-plaintext", h.address, "list")
    assert code == 0, err
    services = out.split()
    for service in (
        "corral.v1.OperatorService",
        "corral.v1.LifecycleService",
        "grpc.health.v1.Health",
    ):
        assert service in services

    code, out, err = await grpcurl(
        "-plaintext", h.address, "list", "corral.v1.OperatorService"
    )
    assert code == 0, err
    assert "corral.v1.OperatorService.GetContainer" in out
    assert "corral.v1.OperatorService.WatchEvents" in out

    code, out, err = await grpcurl(
        "-plaintext",
        "-d",
        '{"name": "web"}',
        h.address,
        "corral.v1.OperatorService/GetContainer",
    )
    assert code == 0, err
    container = json.loads(out)["container"]
    assert container["name"] == "web"
    assert container["state"] == "CONTAINER_STATE_RUNNING"
    # grpcurl prints the proto field names; it reads lowerCamelCase too.
    assert container["min_replica_set"] is True

    # Specs take durations as strings with units, in lowerCamelCase JSON.
    request = json.dumps(
        {
            "name": "adhoc",
            "spec": {
                "command": [sys.executable, "-c", "import time; time.sleep(300)"],
                "stopGracePeriod": "2s",
                "restartPolicy": {
                    "when": "RESTART_WHEN_ALWAYS",
                    "crash": {"window": "5m"},
                },
            },
        }
    )
    code, out, err = await grpcurl(
        "-plaintext",
        "-d",
        request,
        h.address,
        "corral.v1.OperatorService/StartContainer",
    )
    assert code == 0, err
    assert json.loads(out)["container"]["spec"]["stop_grace_period"] == "2s"

    # A refusal shows its status and details.
    code, out, err = await grpcurl(
        "-plaintext",
        "-d",
        '{"name": "Bad Name"}',
        h.address,
        "corral.v1.OperatorService/GetContainer",
    )
    assert code != 0
    assert "InvalidArgument" in err
    assert "name" in err
