"""Event watches that resume by themselves, sync and asyncio.

A watch remembers the sequence of the last event it handed out. When the
stream breaks (corral shutting down answers UNAVAILABLE, a lost connection, an
operator restart) it reconnects with a capped exponential backoff and asks for
the events after that sequence, so the caller sees every event once, in
order. The server's log is the source of truth: nothing is buffered here.

What is never retried: a cursor the log no longer holds
(:class:`CursorOutOfRangeError`; skipping ahead silently would lose events),
bad arguments, refused credentials, and anything else that is not a transport
fault.

Heartbeats do not move the cursor. A heartbeat's head sequence may already
include an event the stream has not sent yet, and resuming after it would
skip that event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import grpc
from grpc.aio import EOF  # type: ignore[attr-defined]  # missing from grpc-stubs

from corral.sdk import _requests
from corral.sdk._errors import CorralError, UnavailableError, from_rpc_error
from corral.sdk._requests import EventTypeLike
from corral.v1 import event_pb2, operator_pb2

logger = logging.getLogger("corral.sdk")

T = TypeVar("T", event_pb2.Event, "event_pb2.Event | operator_pb2.Heartbeat")

INITIAL_BACKOFF = 0.05
"""First reconnect delay, in seconds: short, since a restart is usually quick."""

MAX_BACKOFF = 2.0
"""Largest reconnect delay, in seconds: a restarted operator is found promptly."""


class _WatchCore:
    """State shared by both watches: cursor, filters, backoff and retry rules."""

    def __init__(
        self,
        after_sequence: int,
        names: Iterable[str],
        types: Iterable[EventTypeLike],
        *,
        resume: bool,
        heartbeats: bool,
        reconnect_timeout: float | None,
    ) -> None:
        self.last_sequence = after_sequence
        self.names = tuple(names)
        self.types = tuple(_requests.event_type(t) for t in types)
        self.resume = resume
        self.heartbeats = heartbeats
        self.reconnect_timeout = reconnect_timeout
        self.reconnects = 0
        self.closed = False
        self._delay = INITIAL_BACKOFF
        self._failing_since: float | None = None

    def request(self) -> operator_pb2.WatchEventsRequest:
        return _requests.watch(self.last_sequence, self.names, self.types)

    def accept(self, response: operator_pb2.WatchEventsResponse) -> Any:
        """The item to hand out for ``response``, or ``None`` to read on."""
        self._delay = INITIAL_BACKOFF
        self._failing_since = None
        if response.HasField("heartbeat"):
            return response.heartbeat if self.heartbeats else None
        event = response.event
        if event.sequence <= self.last_sequence:
            return None  # Already handed out before a reconnect.
        self.last_sequence = event.sequence
        return event

    def retry_delay(self, error: CorralError) -> float:
        """Seconds to wait before reconnecting after ``error``.

        Raises:
            CorralError: ``error`` itself, when it is not worth a retry or
                the reconnect timeout has run out.
        """
        if not self.resume or not _transient(error):
            raise error
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if (
            self.reconnect_timeout is not None
            and now - self._failing_since >= self.reconnect_timeout
        ):
            raise error

        delay = self._delay
        self._delay = min(self._delay * 2, MAX_BACKOFF)
        self.reconnects += 1
        logger.info(
            "event watch interrupted; resuming",
            extra={
                "after_sequence": self.last_sequence,
                "code": error.code.name,
                "delay": delay,
            },
        )
        return delay


def _transient(error: CorralError) -> bool:
    """Whether a broken stream is a transport fault worth resuming."""
    if error.code is grpc.StatusCode.UNAVAILABLE:
        return True
    # A stream cut by the peer (not by us; closing stops the loop first).
    if error.code is grpc.StatusCode.CANCELLED:
        return True
    # gRPC reports a connection reset mid-stream as INTERNAL with RST_STREAM.
    return error.code is grpc.StatusCode.INTERNAL and "RST_STREAM" in error.message


def _ended(after: int) -> UnavailableError:
    return UnavailableError(
        grpc.StatusCode.UNAVAILABLE,
        f"the event stream ended after sequence {after}; resuming",
    )


class EventWatch(Generic[T]):
    """A blocking iterator over corral's events that resumes by itself.

    Made by :meth:`corral.sdk.Client.watch_events`. Iterate it; call
    :meth:`close` (from any thread) or leave its ``with`` block to stop.

    Attributes:
        last_sequence: the sequence of the last event handed out (or the
            starting cursor); pass it as ``after_sequence`` to continue later.
        reconnects: how many times the stream was resumed.
    """

    def __init__(
        self,
        open_stream: Callable[[operator_pb2.WatchEventsRequest], Any],
        core: _WatchCore,
    ) -> None:
        self._open = open_stream
        self._core = core
        self._call: Any = None
        self._wake = threading.Event()
        self._lock = threading.Lock()

    @property
    def last_sequence(self) -> int:
        return self._core.last_sequence

    @property
    def reconnects(self) -> int:
        return self._core.reconnects

    def __iter__(self) -> EventWatch[T]:
        return self

    def __next__(self) -> T:
        core = self._core
        while True:
            with self._lock:
                if core.closed:
                    raise StopIteration
                if self._call is None:
                    self._call = self._open(core.request())
                call = self._call

            try:
                response = next(call)
            except StopIteration:
                error: CorralError = _ended(core.last_sequence)
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
            else:
                item = core.accept(response)
                if item is not None:
                    return item  # type: ignore[no-any-return]  # T is Event or Heartbeat
                continue

            with self._lock:
                self._call = None
            if core.closed:
                raise StopIteration
            self._wake.wait(core.retry_delay(error))

    def close(self) -> None:
        """Ends the watch; a blocked ``next()`` in another thread returns."""
        with self._lock:
            self._core.closed = True
            call, self._call = self._call, None
        self._wake.set()
        if call is not None:
            call.cancel()

    def __enter__(self) -> EventWatch[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncEventWatch(Generic[T]):
    """An async iterator over corral's events that resumes by itself.

    Made by :meth:`corral.sdk.AsyncClient.watch_events`. Use ``async for``;
    call :meth:`aclose` or leave its ``async with`` block to stop.

    Attributes:
        last_sequence: the sequence of the last event handed out (or the
            starting cursor); pass it as ``after_sequence`` to continue later.
        reconnects: how many times the stream was resumed.
    """

    def __init__(
        self,
        open_stream: Callable[[operator_pb2.WatchEventsRequest], Any],
        core: _WatchCore,
    ) -> None:
        self._open = open_stream
        self._core = core
        self._call: Any = None
        self._wake = asyncio.Event()

    @property
    def last_sequence(self) -> int:
        return self._core.last_sequence

    @property
    def reconnects(self) -> int:
        return self._core.reconnects

    def __aiter__(self) -> AsyncEventWatch[T]:
        return self

    async def __anext__(self) -> T:
        core = self._core
        while True:
            if core.closed:
                raise StopAsyncIteration
            if self._call is None:
                self._call = self._open(core.request())
            call = self._call

            try:
                response = await call.read()
            except grpc.RpcError as rpc_error:
                error: CorralError = from_rpc_error(rpc_error)
            except asyncio.CancelledError:
                # Our own aclose() cancelled the call: end quietly. A cancelled
                # task (cancelling() > 0) must see its cancellation.
                task = asyncio.current_task()
                if core.closed and not (task and task.cancelling()):
                    raise StopAsyncIteration from None
                raise
            else:
                if response is EOF:
                    error = _ended(core.last_sequence)
                else:
                    item = core.accept(response)
                    if item is not None:
                        return item  # type: ignore[no-any-return]  # T is Event or Heartbeat
                    continue

            self._call = None
            if core.closed:
                raise StopAsyncIteration
            delay = core.retry_delay(error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def aclose(self) -> None:
        """Ends the watch; a pending ``__anext__`` in another task returns."""
        self._core.closed = True
        self._wake.set()
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    async def __aenter__(self) -> AsyncEventWatch[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
