"""The workload side: report lifecycle to corral from inside the workload.

corral starts each workload with ``CONTAINER_NAME`` (the key is configurable),
``CORRAL_INSTANCE_ID``, ``CORRAL_ADDR`` and a per-instance ``CORRAL_TOKEN``.
:class:`Workload` reads them and reports STARTED, ERROR and STOPPED through
``LifecycleService.ReportEvent``, like the original operator's managed
container with its ``onStart`` / ``onStop`` / ``onError`` hooks.

Reporting must never take the workload down: a report retries briefly while
corral is unreachable, then gives up with a warning. Each report carries one
``event_id`` for all its attempts, so a retry that reaches corral twice is
stored once. Outside corral (no such environment) every report is a no-op.

SIGTERM (corral's default stop signal) raises a private ``BaseException`` in
the main thread, so ``except Exception`` in the workload does not swallow it;
the helper then runs the ``on_stop`` hooks, reports STOPPED and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any, Literal, TypeVar

import grpc

from corral.sdk._client import Client
from corral.sdk._errors import CorralError, from_rpc_error
from corral.sdk._specs import Duration, format_duration
from corral.v1 import lifecycle_pb2

logger = logging.getLogger("corral.sdk")

NAME_ENV = "CONTAINER_NAME"
INSTANCE_ENV = "CORRAL_INSTANCE_ID"
ADDRESS_ENV = "CORRAL_ADDR"
TOKEN_ENV = "CORRAL_TOKEN"

REPORT_BUDGET = 5.0
"""Seconds one report may spend retrying: long enough to ride out an operator
restart, short enough that a workload is never held up for long."""

_ATTEMPT_TIMEOUT = 2.0
_FIRST_RETRY_DELAY = 0.1
_MAX_RETRY_DELAY = 1.0

StopReason = Literal["returned", "exit", "error", "signal"]

_Hook = TypeVar("_Hook", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class StopInfo:
    """Why the workload is ending, handed to ``on_stop`` hooks.

    Attributes:
        exit_code: the status the process exits with.
        reason: ``"returned"`` (the main function finished), ``"exit"``
            (``sys.exit``), ``"error"`` (an unhandled exception) or
            ``"signal"`` (a stop signal or Ctrl-C).
        signal: the signal number, for ``"signal"``.
        error: the unhandled exception, for ``"error"``.
    """

    exit_code: int
    reason: StopReason
    signal: int | None = None
    error: BaseException | None = None


class _Terminated(BaseException):
    """Raised in the main thread by the stop-signal handler.

    A ``BaseException`` so that the workload's own ``except Exception`` blocks
    let it through to the helper.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class Workload:
    """Lifecycle reporting and hooks for a workload corral runs.

    Args:
        environ: the environment to read; defaults to ``os.environ``.
        name_key: the variable holding the container's name, for an operator
            configured with another ``container_name_env_key``.
        report_budget: seconds each report may spend retrying.
        stop_signals: signals that mean "stop cleanly" (exit 0).

    Use :meth:`run` with the workload's main function, or ``with workload:``
    around its body; or call the ``report_*`` methods directly.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        name_key: str = NAME_ENV,
        report_budget: float = REPORT_BUDGET,
        stop_signals: Sequence[int] = (signal.SIGTERM,),
    ) -> None:
        env = os.environ if environ is None else environ
        self.name = env.get(name_key, "")
        """The container's name, or empty outside corral."""
        self.instance_id = env.get(INSTANCE_ENV, "")
        """This instance's id, or empty outside corral."""
        self.address = env.get(ADDRESS_ENV, "")
        """corral's address, or empty outside corral."""
        self._token = env.get(TOKEN_ENV, "")
        self._budget = report_budget
        self._stop_signals = tuple(stop_signals)

        self._client: Client | None = None
        self._on_start: list[Callable[[], Any]] = []
        self._on_stop: list[Callable[[StopInfo], Any]] = []
        self._on_error: list[Callable[[BaseException], Any]] = []
        self._phase: Literal["idle", "running", "stopping"] = "idle"
        self._shielded = 0
        self._pending_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._exit_code = 0

    @property
    def managed(self) -> bool:
        """True when running under corral (name, instance and address are set)."""
        return bool(self.name and self.instance_id and self.address)

    # -- hooks ----------------------------------------------------------------

    def on_start(self, hook: _Hook) -> _Hook:
        """Registers ``hook()`` to run before STARTED is reported (decorator)."""
        self._on_start.append(hook)
        return hook

    def on_stop(self, hook: _Hook) -> _Hook:
        """Registers a hook run once when the workload ends, for any reason.

        The hook takes a :class:`StopInfo` or no argument (decorator).
        """
        if _positional_arity(hook) == 0:
            self._on_stop.append(lambda info: hook())
        else:
            self._on_stop.append(hook)
        return hook

    def on_error(self, hook: _Hook) -> _Hook:
        """Registers ``hook(exception)`` for an unhandled exception (decorator)."""
        self._on_error.append(hook)
        return hook

    # -- reports --------------------------------------------------------------

    def report_started(self) -> lifecycle_pb2.ReportEventResponse | None:
        """Tells corral the workload is up and ready (the container turns ready).

        Returns:
            corral's acknowledgement, or ``None`` when not under corral or
            corral could not be reached (a warning is logged).
        """
        return self._report(lifecycle_pb2.REPORT_TYPE_STARTED)

    def report_stopped(
        self, exit_code: int = 0
    ) -> lifecycle_pb2.ReportEventResponse | None:
        """Tells corral the workload is ending with ``exit_code``."""
        return self._report(lifecycle_pb2.REPORT_TYPE_STOPPED, exit_code=exit_code)

    def report_error(
        self, message: str, retry_after: Duration | None = None
    ) -> lifecycle_pb2.ReportEventResponse | None:
        """Tells corral the workload failed; ``message`` becomes the exit's cause.

        Args:
            message: what went wrong, shown as the failure's message.
            retry_after: the restart delay asked for, such as ``"30s"``;
                corral keeps it within the restart policy's bounds.
        """
        return self._report(
            lifecycle_pb2.REPORT_TYPE_ERROR, message=message, retry_after=retry_after
        )

    def _report(
        self,
        kind: lifecycle_pb2.ReportType.ValueType,
        *,
        exit_code: int | None = None,
        message: str = "",
        retry_after: Duration | None = None,
    ) -> lifecycle_pb2.ReportEventResponse | None:
        kind_name = lifecycle_pb2.ReportType.Name(kind).removeprefix("REPORT_TYPE_")
        if not self.managed:
            logger.debug("not under corral; report skipped", extra={"type": kind_name})
            return None

        request = lifecycle_pb2.ReportEventRequest(
            name=self.name,
            instance_id=self.instance_id,
            event_id=str(uuid.uuid4()),
            type=kind,
            message=message,
            retry_after=format_duration(retry_after) if retry_after else "",
        )
        if exit_code is not None:
            request.exit_code = exit_code
        with self._shield():
            return self._send(request, kind_name)

    def _send(
        self, request: lifecycle_pb2.ReportEventRequest, kind_name: str
    ) -> lifecycle_pb2.ReportEventResponse | None:
        """Sends one report, retrying transient failures within the budget."""
        if self._client is None:
            self._client = Client(self.address, token=self._token or None)
        rpc = self._client.lifecycle.ReportEvent
        metadata = (("authorization", f"Bearer {self._token}"),) if self._token else ()
        deadline = time.monotonic() + self._budget
        delay = _FIRST_RETRY_DELAY

        while True:
            left = deadline - time.monotonic()
            try:
                return rpc(
                    request,
                    timeout=max(min(left, _ATTEMPT_TIMEOUT), 0.05),
                    metadata=metadata,
                )
            except grpc.RpcError as rpc_error:
                error: CorralError = from_rpc_error(rpc_error)

            if not error.retryable or time.monotonic() + delay >= deadline:
                logger.warning(
                    "could not report to corral; the workload carries on",
                    extra={
                        "type": kind_name,
                        "event_id": request.event_id,
                        "code": error.code.name,
                        "error": error.message,
                    },
                )
                return None
            time.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_DELAY)

    # -- lifecycle -------------------------------------------------------------

    def run(
        self,
        main: Callable[[], int | None] | Callable[[], Awaitable[int | None]],
        *,
        exit: bool = True,
    ) -> int:
        """Runs the workload's main function under the lifecycle helper.

        Calls the ``on_start`` hooks, reports STARTED, runs ``main`` (a plain
        or an async function, whose int result is the exit status), and
        reports STOPPED with the exit status. An unhandled exception is
        reported as ERROR with its text, handed to the ``on_error`` hooks,
        printed, and ends the process with status 1. A stop signal runs the
        ``on_stop`` hooks and ends it with status 0.

        Args:
            main: the workload.
            exit: end the process with the status (``sys.exit``); ``False``
                returns it instead.

        Returns:
            The exit status, when ``exit`` is false.
        """
        code = 0
        try:
            with self:
                result = main()
                if inspect.isawaitable(result):
                    result = asyncio.run(_awaited(result))
                self._exit_code = code = result if isinstance(result, int) else 0
        except SystemExit as stop:
            code = _exit_status(stop.code)
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        if exit:
            sys.exit(code)
        return code

    def __enter__(self) -> Workload:
        self._phase = "running"
        self._exit_code = 0
        self._install_signal_handlers()
        try:
            for hook in self._on_start:
                hook()
            self.report_started()
        except _Terminated as stop:
            self._finish(StopInfo(0, "signal", signal=stop.signum))
            raise SystemExit(0) from None
        except BaseException as error:
            self._finish_after(error)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._phase = "stopping"
        if isinstance(error, _Terminated):
            self._finish(StopInfo(0, "signal", signal=error.signum))
            raise SystemExit(0) from None
        if error is None:
            self._finish(StopInfo(self._exit_code, "returned"))
        else:
            self._finish_after(error)

    def _finish_after(self, error: BaseException) -> None:
        """Ends the workload after ``error`` escaped its body."""
        self._phase = "stopping"
        if isinstance(error, SystemExit):
            self._finish(StopInfo(_exit_status(error.code), "exit"))
        elif isinstance(error, KeyboardInterrupt):
            self._finish(StopInfo(130, "signal", signal=signal.SIGINT))
        else:
            self.report_error(_describe(error))
            for hook in self._on_error:
                self._run_hook(hook, error)
            self._finish(StopInfo(1, "error", error=error))

    def _finish(self, info: StopInfo) -> None:
        """Runs the ``on_stop`` hooks and reports STOPPED, once."""
        self._phase = "stopping"
        try:
            for hook in self._on_stop:
                self._run_hook(hook, info)
            self.report_stopped(info.exit_code)
        finally:
            self._restore_signal_handlers()
            if self._client is not None:
                self._client.close()
                self._client = None
            self._phase = "idle"
            self._pending_signal = None

    def _run_hook(self, hook: Callable[[Any], Any], argument: Any) -> None:
        # A failing hook must not stop the others or the final report.
        try:
            hook(argument)
        except Exception:
            logger.exception("workload hook failed", extra={"hook": repr(hook)})

    # -- signals ---------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not the main thread; stop signals left alone")
            return
        for signum in self._stop_signals:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._phase != "running":
            return  # Already stopping: the hooks and the last report run on.
        if self._shielded:
            self._pending_signal = signum  # Raised once the report is sent.
            return
        raise _Terminated(signum)

    @contextlib.contextmanager
    def _shield(self) -> Iterator[None]:
        """Defers stop signals while a report is in flight."""
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1
        pending = self._pending_signal
        if pending is not None and not self._shielded and self._phase == "running":
            self._pending_signal = None
            raise _Terminated(pending)


async def _awaited(result: Awaitable[int | None]) -> int | None:
    return await result


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` produces."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1


def _positional_arity(hook: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):
        return 1
    positional = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    return sum(1 for p in parameters if p.kind in positional)
