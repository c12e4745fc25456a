"""Fan-out of committed events to live subscribers.

The store's event log is the source of truth; the hub only keeps the newest
events in memory and wakes subscribers when the head moves. A subscriber reads
by cursor: what it has not seen is taken from the memory window when it is
there, from the log otherwise. Nobody is ever dropped or skipped, and a slow
subscriber costs the operator nothing but its cursor.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from corral.core.model import Event


class EventHub:
    """Holds the newest events and signals new ones.

    Args:
        head: the log's head sequence when the operator started.
        window: how many recent events to keep in memory.
    """

    def __init__(self, head: int, window: int = 20_000) -> None:
        self._recent: collections.deque[Event] = collections.deque(maxlen=window)
        self._head = head
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def head(self) -> int:
        """Sequence of the newest committed event."""
        return self._head

    @property
    def closed(self) -> bool:
        """True once the operator is shutting down."""
        return self._closed

    def publish(self, events: Sequence[Event]) -> None:
        """Adds committed events (in sequence order) and wakes subscribers."""
        if not events:
            return
        self._recent.extend(events)
        self._head = events[-1].sequence
        self._changed.set()
        self._changed = asyncio.Event()

    def recent_after(self, sequence: int, limit: int) -> list[Event] | None:
        """Events after ``sequence`` from memory, or ``None`` when the memory
        window no longer reaches back that far (read the log instead)."""
        if sequence >= self._head:
            return []
        if not self._recent or self._recent[0].sequence > sequence + 1:
            return None
        start = sequence + 1 - self._recent[0].sequence
        out: list[Event] = []
        for index in range(start, min(start + limit, len(self._recent))):
            out.append(self._recent[index])
        return out

    async def wait(self, after: int, timeout: float) -> bool:
        """Waits until the head passes ``after`` or ``timeout`` elapses.

        Returns:
            True when there is something new to read.
        """
        if self._head > after or self._closed:
            return self._head > after
        changed = self._changed
        try:
            # asyncio.timeout, unlike wait_for, starts no task per wait: this
            # runs once per subscriber for every batch of events.
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            return False
        return self._head > after

    def close(self) -> None:
        """Wakes every subscriber for shutdown."""
        self._closed = True
        self._changed.set()
