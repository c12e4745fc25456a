"""SIGKILL of corral in the middle of a burst of Start and Stop calls from
several clients: after the restart the database is consistent and every
acknowledged call's effect is present."""

from __future__ import annotations

import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from corral.store import Store
from corral.v1 import container_pb2, operator_pb2, operator_pb2_grpc
from tests.harness import CorralProcess

CLIENTS = 4
NAMES_PER_CLIENT = 3
SLEEP = [sys.executable, "-c", "import time; time.sleep(300)"]
RUNNING = container_pb2.DESIRED_STATE_RUNNING
STOPPED = container_pb2.DESIRED_STATE_STOPPED


@dataclass
class Call:
    """One Start or Stop as its client saw it."""

    desired: int
    acknowledged: bool


@dataclass
class Client:
    """One client thread, the only one that touches its containers."""

    names: list[str]
    calls: dict[str, list[Call]] = field(default_factory=dict)

    def run(self, address: str, stop: threading.Event, seed: int) -> None:
        rng = random.Random(seed)
        spec = container_pb2.ContainerSpec(command=SLEEP, stop_grace_period="2s")
        with grpc.insecure_channel(address) as channel:
            stub = operator_pb2_grpc.OperatorServiceStub(channel)
            while not stop.is_set():
                name = rng.choice(self.names)
                desired = rng.choice((RUNNING, STOPPED))
                history = self.calls.setdefault(name, [])
                call = Call(desired, acknowledged=False)
                history.append(call)
                try:
                    if desired == RUNNING:
                        stub.StartContainer(
                            operator_pb2.StartContainerRequest(name=name, spec=spec),
                            timeout=10,
                        )
                    else:
                        stub.StopContainer(
                            operator_pb2.StopContainerRequest(name=name), timeout=10
                        )
                    call.acknowledged = True
                except grpc.RpcError as error:
                    code = error.code()  # type: ignore[attr-defined]
                    if code is grpc.StatusCode.NOT_FOUND:  # Stop before any Start
                        history.pop()
                        continue
                    if code is grpc.StatusCode.UNAVAILABLE:
                        return  # corral is gone: this call's fate is unknown
                    raise

    def allowed(self, name: str) -> set[int]:
        """Desired states consistent with what this client was told."""
        history = self.calls.get(name, [])
        acked = [i for i, call in enumerate(history) if call.acknowledged]
        if not acked:
            return {call.desired for call in history} | {0}
        last = acked[-1]
        # A call sent after the last acknowledged one may or may not have landed.
        return {history[i].desired for i in range(last, len(history))}


@pytest.mark.slow
def test_sigkill_mid_burst_loses_no_acknowledged_call(
    tmp_path: Path, workload_addresses: set[str]
) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[operator]\nreconcile_interval = "0s"\n')
    data_dir = tmp_path / "data"
    corral = CorralProcess(fleet, data_dir, workload_addresses)
    corral.start()

    clients = [
        Client([f"c{index}-{n}" for n in range(NAMES_PER_CLIENT)])
        for index in range(CLIENTS)
    ]
    stop = threading.Event()
    threads = [
        threading.Thread(target=client.run, args=(corral.address, stop, seed))
        for seed, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    time.sleep(2.5)
    corral.kill()  # SIGKILL, mid-burst
    stop.set()
    for thread in threads:
        thread.join(30)
    acknowledged = sum(
        c.acknowledged for cl in clients for h in cl.calls.values() for c in h
    )
    assert acknowledged >= 10, "the burst was too small to mean anything"

    corral.start()
    try:
        with grpc.insecure_channel(corral.address) as channel:
            stub = operator_pb2_grpc.OperatorServiceStub(channel)
            listed = stub.ListContainers(
                operator_pb2.ListContainersRequest(page_size=1000), timeout=10
            )
            events = []
            after = 0
            while True:
                page = stub.ListEvents(
                    operator_pb2.ListEventsRequest(
                        after_sequence=after, page_size=1000
                    ),
                    timeout=10,
                )
                events.extend(page.events)
                if not page.events:
                    break
                after = page.events[-1].sequence
            head = page.head_sequence

        # Event sequences are gap-free from 1 to the head.
        assert [event.sequence for event in events] == list(range(1, head + 1))

        # The database's records are what the API lists.
        store = Store.for_data_dir(data_dir)
        try:
            records = {record.name: record for record in store.load_containers()}
        finally:
            store.close()
        by_name = {container.name: container for container in listed.containers}
        assert set(records) == set(by_name)
        for name, container in by_name.items():
            record = records[name]
            assert container.desired_state == getattr(
                container_pb2, f"DESIRED_STATE_{record.desired_state.value}"
            ), name
            assert container.instance_id == record.instance_id, name

        # Every acknowledged call's effect is there.
        for client in clients:
            for name in client.names:
                allowed = client.allowed(name)
                have = by_name[name].desired_state if name in by_name else 0
                assert have in allowed, (name, have, client.calls.get(name))
    finally:
        corral.kill()
