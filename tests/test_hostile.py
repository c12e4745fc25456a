"""Hostile input against every RPC: the server never answers INTERNAL (or
UNKNOWN), never dies, and no refused call changes the stored state.

Requests are generated from the proto descriptors, so every field of every
request is covered, and a new RPC or field is fuzzed without a change here:
random and malformed values, oversized strings, odd Unicode, huge repeated
and map fields, unknown enum values, plus raw bytes that are not a valid
message at all, sent through a generic channel.

Workloads run on an inert fake runtime: it starts nothing, so a fuzzed spec
that happens to be valid never executes a random command line, and accepted
calls settle at once, which keeps the before/after snapshots meaningful.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.server import CorralServer
from corral.core.model import ExitInfo, ExitReason
from corral.runtimes.base import ExitCallback, LaunchRequest, RuntimeHandle
from corral.v1 import operator_pb2
from tests.harness import ServerFactory
from tests.test_auth import ADMIN, TOKENS, corral_methods, reason_of

EXAMPLES_PER_METHOD = 110
"""Structured examples per RPC (12 RPCs), plus as many raw-bytes examples."""

MEMBERS = ("web", "worker")
FIELD = descriptor.FieldDescriptor


class InertRuntime:
    """A fake runtime that starts nothing: instances "run" until stopped."""

    name = "process"  # validated as the process runtime would be

    def __init__(self, on_exit: ExitCallback) -> None:
        self._on_exit = on_exit
        self._live: set[tuple[str, str]] = set()
        self._ids = itertools.count(1)

    async def start(self, request: LaunchRequest) -> RuntimeHandle:
        self._live.add((request.name, request.instance_id))
        number = next(self._ids)
        return RuntimeHandle(str(number), f"inert-{number}", datetime.now(UTC))

    async def stop(
        self, name: str, instance_id: str, signal: int, grace: float
    ) -> None:
        if (name, instance_id) in self._live:
            self._live.discard((name, instance_id))
            info = ExitInfo(
                ExitReason.SIGNALED, datetime.now(UTC), instance_id, signal=signal
            )
            asyncio.get_running_loop().call_soon(self._on_exit, name, instance_id, info)

    async def adopt(
        self, name: str, instance_id: str, runtime_id: str, identity: str
    ) -> RuntimeHandle | None:
        return None

    def is_running(self, name: str, instance_id: str) -> bool:
        return (name, instance_id) in self._live

    @property
    def available(self) -> bool:
        return True

    def last_exit(self, instance_id: str) -> ExitInfo | None:
        return None

    async def orphans(self, known_instances: set[str]) -> list[Any]:
        return []

    async def remove(self, runtime_id: str) -> None:
        pass

    async def release(self, name: str) -> None:
        pass

    async def close(self) -> None:
        pass


# --- strategies from the descriptors ------------------------------------------------

ODD = st.sampled_from(
    [
        "",
        "\x00",
        "web\x00",
        "WEB",
        "wéb",
        "w\u200beb",
        "\ufeffweb",
        "ｗｅｂ",
        "\U0001f600",
        "\u202e" + "bew",
        "a" * 63,
        "a" * 64,
        "a" * 70_000,
        "-web",
        "web-",
        "1web",
        "${secret:X}",
        "${secret:",
        "10s",
        "-1s",
        "999999999999h",
        "1e400s",
        "NaN",
        "SIGKILL",
        "SIGNOPE",
        "state=RUNNING",
        "label.=",
        "name=*",
        "bm90IGEgdG9rZW4=",
        "..",
        "/",
        "\ud800",
    ]
)
TEXT = st.one_of(
    ODD,
    st.sampled_from([*MEMBERS, "ghost", "adhoc-1"]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
)
INT_RANGES = {
    FIELD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FIELD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FIELD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FIELD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FIELD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FIELD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FIELD.TYPE_UINT32: (0, 2**32 - 1),
    FIELD.TYPE_FIXED32: (0, 2**32 - 1),
    FIELD.TYPE_UINT64: (0, 2**64 - 1),
    FIELD.TYPE_FIXED64: (0, 2**64 - 1),
}
JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True) | TEXT,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


def _text(value: str) -> str:
    """Protobuf strings must be valid UTF-8: lone surrogates become U+FFFD."""
    return value.encode("utf-8", "replace").decode("utf-8")


def _scalar(draw: Any, field: Any) -> Any:
    if field.type == FIELD.TYPE_STRING:
        return _text(draw(TEXT))
    if field.type == FIELD.TYPE_BYTES:
        return draw(st.binary(max_size=64))
    if field.type == FIELD.TYPE_BOOL:
        return draw(st.booleans())
    if field.type in (FIELD.TYPE_FLOAT, FIELD.TYPE_DOUBLE):
        return draw(st.floats(width=32 if field.type == FIELD.TYPE_FLOAT else 64))
    if field.type == FIELD.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return draw(st.sampled_from(known) | st.integers(-(2**31), 2**31 - 1))
    low, high = INT_RANGES[field.type]
    return draw(
        st.sampled_from([0, 1, -1 if low < 0 else 2, low, high])
        | st.integers(low, high)
    )


@st.composite
def messages(draw: Any, message_type: Any, depth: int = 0) -> Any:
    """A message of ``message_type`` with a random subset of its fields set."""
    message = message_factory.GetMessageClass(message_type)()
    if message_type.full_name == "google.protobuf.Struct":
        value = draw(st.dictionaries(st.text(max_size=10).map(_text), JSON, max_size=4))
        with contextlib.suppress(ValueError, TypeError):
            message.update(json.loads(json.dumps(value, default=str)))
        return message
    for field in message_type.fields:
        if not draw(st.booleans()):
            continue
        is_message = field.type == FIELD.TYPE_MESSAGE
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            size = draw(st.sampled_from([1, 3, 2000]) | st.integers(0, 5))
            target = getattr(message, field.name)
            for _ in range(size):
                target[_scalar(draw, key_field)] = _scalar(draw, value_field)
            continue
        if field.is_repeated:
            size = draw(st.sampled_from([0, 1, 2, 3, 5000]))
            target = getattr(message, field.name)
            if is_message:
                if depth < 3:
                    for _ in range(min(size, 3)):
                        target.add().CopyFrom(
                            draw(messages(field.message_type, depth + 1))
                        )
            elif size > 100:  # huge repeated fields: one short value many times
                value = _scalar(draw, field)
                target.extend([value[:64] if isinstance(value, str) else value] * size)
            else:
                target.extend(_scalar(draw, field) for _ in range(size))
            continue
        if is_message:
            if depth < 3:
                getattr(message, field.name).CopyFrom(
                    draw(messages(field.message_type, depth + 1))
                )
            continue
        setattr(message, field.name, _scalar(draw, field))
    return message


OVERSIZED = b"\x0a\x80\x80\x80\x03" + b"a" * (6 * 2**20)
"""A 6 MiB string field: past max_message_bytes (4 MiB)."""


def payloads(method: Any) -> st.SearchStrategy[bytes]:
    """Serialized hostile requests for ``method``, or raw non-protobuf bytes."""
    structured = messages(method.input_type).map(lambda m: m.SerializeToString())
    raw = st.one_of(
        st.binary(min_size=1, max_size=256),
        st.sampled_from(
            [
                b"\xff",
                b"\x0a\xff\xff\xff\xff\x0f",  # a length far past the end
                b"\x08" + b"\xff" * 11,  # an over-long varint
                b"\x0b",  # a group start with no end
                b"\x0a\x02\xc3\x28",  # a string that is not UTF-8
                b"\x07",  # wire type 7 does not exist
                b"\x00",  # field number zero
                OVERSIZED,
            ]
        ),
    )
    return st.one_of(structured, raw)


# --- the run --------------------------------------------------------------------------


class Fuzzer:
    """Sends requests, checks invariants, counts what happened."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_send_message_length", 64 * 2**20)]
        )
        self.metadata = (("authorization", f"Bearer {ADMIN}"),)
        self.sent = 0
        self.accepted = 0
        self.refusals: collections.Counter[tuple[str, str]] = collections.Counter()
        self.violations: list[str] = []
        self.lock = threading.Lock()
        self.baseline = self.settle()

    def snapshot(self) -> bytes:
        method = "/corral.v1.OperatorService/ListContainers"
        request = operator_pb2.ListContainersRequest(page_size=1000)
        reply = self.channel.unary_unary(
            method,
            request_serializer=operator_pb2.ListContainersRequest.SerializeToString,
            response_deserializer=None,
        )(request, metadata=self.metadata, timeout=10)
        return bytes(reply)

    def settle(self) -> bytes:
        """The snapshot once accepted calls have finished taking effect."""
        last = self.snapshot()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.03)
            now = self.snapshot()
            if now == last:
                return now
            last = now
        return last

    def send(self, name: str, streaming: bool, payload: bytes, token: bool) -> None:
        metadata = self.metadata if token else ()
        code = grpc.StatusCode.OK
        reason = details = ""
        before = self.baseline
        try:
            if streaming:
                stream = self.channel.unary_stream(name)(
                    payload, metadata=metadata, timeout=3
                )
                next(stream, None)
                stream.cancel()
            else:
                self.channel.unary_unary(name)(payload, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            reason = reason_of(error)
            details = error.details()  # type: ignore[attr-defined]
        self.sent += 1
        short = name.rpartition("/")[2]
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            self.violations.append(f"{short} answered {code.name}: {details}")
        # CANCELLED or DEADLINE_EXCEEDED on a watch: it was open and we hung up.
        hung_up = (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
        if code is grpc.StatusCode.OK or (streaming and code in hung_up):
            self.accepted += 1
            self.baseline = self.settle()
            return
        self.refusals[(code.name, reason)] += 1
        after = self.snapshot()
        if after != before:
            self.violations.append(
                f"refused {short} ({code.name} {reason}) changed state"
            )
            self.baseline = self.settle()


async def test_hostile_input_changes_nothing_it_refuses(
    servers: ServerFactory, tmp_path: Path
) -> None:
    fleet = "".join(
        f'[[containers]]\nname = "{name}"\ncommand = ["inert"]\n' for name in MEMBERS
    )
    config = servers.config(fleet, max_containers=100, reconcile_interval="0s")
    server = CorralServer(
        config,
        environ={"PATH": "/nonexistent", **TOKENS, "X": "secret-x"},
        runtime_factory=InertRuntime,
        heartbeat_interval=0.05,
    )
    await server.start()
    try:
        fuzzer = await asyncio.to_thread(Fuzzer, server.address)
        started = time.monotonic()
        await asyncio.to_thread(run_fuzz, fuzzer)
        elapsed = time.monotonic() - started

        health = health_pb2_grpc.HealthStub(fuzzer.channel)
        reply = await asyncio.to_thread(health.Check, health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        fuzzer.channel.close()
    finally:
        await server.stop(grace=1)

    summary = {
        "requests_sent": fuzzer.sent,
        "accepted": fuzzer.accepted,
        "refused": sum(fuzzer.refusals.values()),
        "distinct_refusals": len(fuzzer.refusals),
        "refused_calls_that_changed_state": sum(
            "changed state" in v for v in fuzzer.violations
        ),
        "internal_or_unknown": sum("answered" in v for v in fuzzer.violations),
        "seconds": round(elapsed, 1),
        "refusals": {
            f"{c} {r}".strip(): n for (c, r), n in fuzzer.refusals.most_common()
        },
    }
    print("\nhostile input summary:", json.dumps(summary, indent=2))
    (tmp_path / "hostile-summary.json").write_text(json.dumps(summary, indent=2))
    assert not fuzzer.violations, "\n".join(fuzzer.violations[:20])
    assert fuzzer.sent >= 1500


def run_fuzz(fuzzer: Fuzzer) -> None:
    """Every corral RPC, structured then raw, with and without credentials."""
    for full_name, method in corral_methods():
        strategy = payloads(method)
        test = _example(fuzzer, full_name, method.server_streaming, strategy)
        test()


def _example(
    fuzzer: Fuzzer, full_name: str, streaming: bool, strategy: Any
) -> Callable[[], None]:
    @settings(
        max_examples=EXAMPLES_PER_METHOD * 2,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(payload=strategy, token=st.booleans() | st.just(True))
    def example(payload: bytes, token: bool) -> None:
        fuzzer.send(full_name, streaming, payload, token)

    return example
