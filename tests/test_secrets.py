"""Secrets stay secret: a canary secret and a canary admin token, searched for
in every response, event, log line, workload log file and CLI output of a
whole session, including a failing environment builder and a missing secret."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from corral.core.model import EventType
from corral.v1 import operator_pb2
from tests.harness import ServerFactory
from tests.test_auth import run_cli

CANARY = "canary-secret-7f3a9c1e5b"
CANARY_TOKEN = "canary-admin-token-2d8e6f4a0c"

BUILDER = """
def build(spec, environ):
    if spec.config.get("fail"):
        raise RuntimeError("builder failed while holding " + environ["CANARY"])
    return {"FROM_BUILDER": "yes"}
"""

SLEEP = [
    sys.executable,
    "-c",
    "print('started', flush=True); import time; time.sleep(300)",
]


async def test_a_canary_secret_and_token_never_leak(
    servers: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "canarybuilder.py").write_text(BUILDER)
    fleet = f"""
[operator]
env_builder = "canarybuilder:build"

[[containers]]
name = "member"
command = {json.dumps(SLEEP)}
env = {{ API_KEY = "${{secret:CANARY}}" }}
"""
    h = await servers.start(
        fleet,
        environ={"CANARY": CANARY, "CORRAL_ADMIN_TOKEN": CANARY_TOKEN},
    )
    await h.wait_event("member", EventType.RUNNING)
    token = {"CORRAL_API_TOKEN": CANARY_TOKEN}
    failing = tmp_path / "failing.json"
    failing.write_text(
        json.dumps(
            {
                "command": SLEEP,
                "env": {"API_KEY": "${secret:CANARY}"},
                "config": {"fail": True},
                "restart_policy": {"when": "never"},
            }
        )
    )
    session = [
        ("start", "good", "--env", "API_KEY=${secret:CANARY}", "--", *SLEEP),
        ("start", "good2", "--json", "--env", "K=${secret:CANARY}", "--", *SLEEP),
        ("start", "broken", "--spec-file", str(failing)),
        ("start", "nosecret", "--env", "K=${secret:NOT_THERE}", "--", *SLEEP),
        ("get", "good"),
        ("get", "good", "--json"),
        ("get", "member", "--json"),
        ("get", "broken", "--json"),
        ("ls",),
        ("ls", "--json"),
        ("events", "--after", "0"),
        ("events", "--after", "0", "--json"),
        ("info",),
        ("info", "--json"),
        ("stop", "good", "--grace", "1s"),
        ("stop", "good2", "--grace", "1s", "--json"),
        ("rm", "good"),
        ("get", "good"),  # NOT_FOUND now
        ("ls", "--json"),
    ]
    outputs = []
    for args in session:
        result = await run_cli(h.address, *args, env=token)
        outputs.append(f"$ corral {' '.join(args)}\n{result.out}{result.err}")
    text = "\n".join(outputs)

    # The session did what it should, so the search below means something.
    assert "builder failed" in text  # the builder's error is reported, redacted
    assert "NOT_THERE" in text  # the missing secret is named
    assert "CONTAINER_NOT_FOUND" in text

    # Every response and every event, straight from the API.
    metadata = (("authorization", f"Bearer {CANARY_TOKEN}"),)
    listed = await h.stub.ListContainers(
        operator_pb2.ListContainersRequest(page_size=1000), metadata=metadata
    )
    events = await h.stub.ListEvents(
        operator_pb2.ListEventsRequest(after_sequence=0, page_size=1000),
        metadata=metadata,
    )
    info = await h.stub.GetOperatorInfo(
        operator_pb2.GetOperatorInfoRequest(), metadata=metadata
    )
    assert events.events
    responses = [str(listed), str(events), str(info)]
    for container in listed.containers:
        got = await h.stub.GetContainer(
            operator_pb2.GetContainerRequest(name=container.name), metadata=metadata
        )
        responses.append(str(got))
    stored = [
        repr(event) for event in h.server.store.list_events(after=0, limit=10_000)
    ]
    stored += [repr(record) for record in h.server.store.load_containers()]

    logs = [
        f"{record.getMessage()} {record.__dict__!r} {record.exc_text or ''}"
        for record in caplog.records
    ]
    log_dir = h.server.config.operator.data_dir / "logs"
    files = [path.read_text(errors="replace") for path in log_dir.glob("*")]
    assert any("started" in content for content in files)

    everything = {
        "cli": text,
        "responses": "\n".join(responses),
        "stored": "\n".join(stored),
        "server log": "\n".join(logs),
        "log files": "\n".join(files),
    }
    for where, content in everything.items():
        for canary in (CANARY, CANARY_TOKEN):
            assert canary not in content, f"{canary!r} leaked into the {where}"
