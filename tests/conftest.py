"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.harness import ServerFactory, kill_workloads, server_factory


@pytest.fixture
def workload_addresses() -> Iterator[set[str]]:
    """Addresses of the servers a test started; their workloads die at teardown."""
    addresses: set[str] = set()
    yield addresses
    kill_workloads(addresses)


@pytest.fixture
async def servers(
    tmp_path: Path, workload_addresses: set[str]
) -> AsyncIterator[ServerFactory]:
    """Starts real in-process corral servers on ephemeral ports."""
    async with server_factory(tmp_path, workload_addresses) as factory:
        yield factory
