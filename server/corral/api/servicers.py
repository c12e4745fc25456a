"""gRPC servicers: request validation and conversion around the operator.

Handlers stay thin: check the request's own fields, call the operator, convert
the answer. Every error leaves through :mod:`corral.api.errors`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib.metadata
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc

from corral.api import convert
from corral.api.errors import translate_stream, translate_unary
from corral.core import specs
from corral.core.errors import (
    FieldViolation,
    InvalidArgumentError,
    OutOfRangeError,
    ResourceExhaustedError,
    UnavailableError,
)
from corral.core.model import ContainerRecord, Event, EventType
from corral.core.operator import Operator
from corral.v1 import (
    event_pb2,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
)

Context = grpc.aio.ServicerContext[Any, Any]

_RESPONSE_CACHE_SIZE = 20_000
"""Stream messages kept for the subscribers that follow the head together."""

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@functools.cache
def version() -> str:
    """corral's installed version."""
    try:
        return importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


class OperatorServicer(operator_pb2_grpc.OperatorServiceServicer):
    """``corral.v1.OperatorService``."""

    def __init__(
        self,
        operator: Operator,
        *,
        started: datetime,
        heartbeat_interval: float = 5.0,
    ) -> None:
        self._operator = operator
        self._started = started
        self._heartbeat = heartbeat_interval
        self._watchers = 0
        self._responses: dict[int, operator_pb2.WatchEventsResponse] = {}

    def _container(self, record: ContainerRecord) -> Any:
        return convert.container_to_proto(record, self._operator.crash_loop(record))

    @translate_unary
    async def StartContainer(
        self, request: operator_pb2.StartContainerRequest, context: Context
    ) -> operator_pb2.StartContainerResponse:
        spec = (
            convert.spec_from_proto(request.spec) if request.HasField("spec") else None
        )
        record = await self._operator.start(
            request.name, spec, force=request.force, request_id=request.request_id
        )
        return operator_pb2.StartContainerResponse(container=self._container(record))

    @translate_unary
    async def StopContainer(
        self, request: operator_pb2.StopContainerRequest, context: Context
    ) -> operator_pb2.StopContainerResponse:
        grace = (
            specs.parse_duration(request.grace_period, "grace_period")
            if request.grace_period
            else None
        )
        record = await self._operator.stop(request.name, grace)
        return operator_pb2.StopContainerResponse(container=self._container(record))

    @translate_unary
    async def RestartContainer(
        self, request: operator_pb2.RestartContainerRequest, context: Context
    ) -> operator_pb2.RestartContainerResponse:
        record = await self._operator.restart(request.name)
        return operator_pb2.RestartContainerResponse(container=self._container(record))

    @translate_unary
    async def GetContainer(
        self, request: operator_pb2.GetContainerRequest, context: Context
    ) -> operator_pb2.GetContainerResponse:
        _check_name(request.name)
        record = self._operator.get(request.name)
        return operator_pb2.GetContainerResponse(container=self._container(record))

    @translate_unary
    async def ListContainers(
        self, request: operator_pb2.ListContainersRequest, context: Context
    ) -> operator_pb2.ListContainersResponse:
        size = _page_size(request.page_size)
        after = _decode_token(request.page_token)
        matches = _parse_filter(request.filter)
        head = self._operator.hub.head

        page: list[ContainerRecord] = []
        next_token = ""
        for record in self._operator.list_containers():
            if after and record.name <= after:
                continue
            if not all(match(record) for match in matches):
                continue
            if len(page) == size:
                next_token = _encode_token(page[-1].name)
                break
            page.append(record)
        return operator_pb2.ListContainersResponse(
            containers=[self._container(record) for record in page],
            next_page_token=next_token,
            event_sequence=head,
        )

    @translate_unary
    async def DeleteContainer(
        self, request: operator_pb2.DeleteContainerRequest, context: Context
    ) -> operator_pb2.DeleteContainerResponse:
        await self._operator.delete(request.name)
        return operator_pb2.DeleteContainerResponse()

    @translate_unary
    async def ClearCrashHistory(
        self, request: operator_pb2.ClearCrashHistoryRequest, context: Context
    ) -> operator_pb2.ClearCrashHistoryResponse:
        record = await self._operator.clear_crash_history(request.name)
        return operator_pb2.ClearCrashHistoryResponse(container=self._container(record))

    @translate_unary
    async def ReconcileFleet(
        self, request: operator_pb2.ReconcileFleetRequest, context: Context
    ) -> operator_pb2.ReconcileFleetResponse:
        result = await self._operator.reconcile()
        return operator_pb2.ReconcileFleetResponse(
            already_running=result.already_running,
            started=len(result.started),
            skipped=len(result.skipped),
            failed=[
                operator_pb2.ReconcileFailure(name=name, reason=reason, message=message)
                for name, reason, message in result.failed
            ],
            started_names=result.started,
            skipped_names=result.skipped,
        )

    @translate_unary
    async def GetOperatorInfo(
        self, request: operator_pb2.GetOperatorInfoRequest, context: Context
    ) -> operator_pb2.GetOperatorInfoResponse:
        settings = self._operator.settings
        database = "sqlite"
        if settings.database_url and settings.database_url.startswith("postgresql"):
            database = "postgresql"
        return operator_pb2.GetOperatorInfoResponse(
            version=version(),
            runtime=self._operator.runtime_name,
            min_replica_set=self._operator.members,
            settings=operator_pb2.OperatorSettings(
                listen=settings.listen,
                runtime=settings.runtime,
                reconcile_interval=specs.format_duration(settings.reconcile_interval),
                allow_ad_hoc_containers=settings.allow_ad_hoc_containers,
                container_name_env_key=settings.container_name_env_key,
                data_dir=str(settings.data_dir),
                database=database,
                config_file=str(settings.config_file or ""),
            ),
            start_time=convert.timestamp(self._started),
            event_sequence=self._operator.hub.head,
        )

    @translate_unary
    async def ListEvents(
        self, request: operator_pb2.ListEventsRequest, context: Context
    ) -> operator_pb2.ListEventsResponse:
        size = _page_size(request.page_size)
        after = request.after_sequence
        if request.page_token:
            after = _decode_sequence(request.page_token)
        if after < 0:
            raise _invalid("after_sequence", "must be zero or positive")
        for name in request.names:
            _check_name(name, "names")
        head = self._operator.hub.head
        events = self._operator.list_events(
            after=after, limit=size, names=request.names
        )
        next_token = ""
        if len(events) == size and events[-1].sequence < head:
            next_token = _encode_token(str(events[-1].sequence))
        return operator_pb2.ListEventsResponse(
            events=[convert.event_to_proto(event) for event in events],
            next_page_token=next_token,
            head_sequence=head,
        )

    @translate_stream
    async def WatchEvents(
        self, request: operator_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[operator_pb2.WatchEventsResponse]:
        cursor = request.after_sequence
        names = set(request.names)
        for name in names:
            _check_name(name, "names")
        known = set(event_pb2.EventType.values())
        if any(t not in known for t in request.types):
            raise _invalid("types", "holds a value that is not an EventType")
        types = {
            event_pb2.EventType.Name(t).removeprefix("EVENT_TYPE_")
            for t in request.types
        }
        wanted = {EventType(t) for t in types if t != "UNSPECIFIED"}
        self._check_cursor(cursor)
        limit = self._operator.settings.max_watchers
        if self._watchers >= limit:
            raise ResourceExhaustedError(
                f"{self._watchers} event streams are open, the operator's limit "
                f"(max_watchers = {limit}); close one or retry later",
                reason="TOO_MANY_WATCHERS",
            )
        self._watchers += 1
        try:
            async for item in self._stream(cursor, names, wanted):
                yield item
        finally:
            self._watchers -= 1

    async def _stream(
        self, cursor: int, names: set[str], wanted: set[EventType]
    ) -> AsyncIterator[operator_pb2.WatchEventsResponse]:
        hub = self._operator.hub
        while True:
            # Catch up from memory when it reaches back far enough, else the log.
            batch: Sequence[Event] | None = hub.recent_after(cursor, MAX_PAGE_SIZE)
            if batch is None:
                batch = self._operator.list_events(after=cursor, limit=MAX_PAGE_SIZE)
            for event in batch:
                cursor = event.sequence
                if names and event.name not in names:
                    continue
                if wanted and event.type not in wanted:
                    continue
                yield self._event_response(event)
            if batch:
                continue

            # Up to date: wait for news, or send a heartbeat.
            if hub.closed:
                raise UnavailableError(
                    "corral is shutting down; resume the watch from the last sequence"
                )
            if not await hub.wait(cursor, self._heartbeat) and not hub.closed:
                yield operator_pb2.WatchEventsResponse(
                    heartbeat=operator_pb2.Heartbeat(
                        head_sequence=hub.head,
                        time=convert.timestamp(datetime.now(UTC)),
                    )
                )

    def _event_response(self, event: Event) -> operator_pb2.WatchEventsResponse:
        """The stream message for ``event``, built once for all subscribers
        (a logged event never changes)."""
        response = self._responses.get(event.sequence)
        if response is None:
            if len(self._responses) >= _RESPONSE_CACHE_SIZE:
                self._responses.clear()
            response = operator_pb2.WatchEventsResponse(
                event=convert.event_to_proto(event)
            )
            self._responses[event.sequence] = response
        return response

    def _check_cursor(self, cursor: int) -> None:
        head = self._operator.hub.head
        oldest = self._operator.oldest_sequence()
        if cursor < 0 or cursor > head or cursor < oldest - 1:
            raise OutOfRangeError(
                f"after_sequence {cursor} is outside the event log, which holds "
                f"{oldest} to {head}; resume from {max(oldest - 1, 0)} "
                "or from the head",
                metadata={"oldest_sequence": str(oldest), "head_sequence": str(head)},
            )


class LifecycleServicer(lifecycle_pb2_grpc.LifecycleServiceServicer):
    """``corral.v1.LifecycleService``: reports from the workloads."""

    def __init__(self, operator: Operator) -> None:
        self._operator = operator

    @translate_unary
    async def ReportEvent(
        self, request: lifecycle_pb2.ReportEventRequest, context: Context
    ) -> lifecycle_pb2.ReportEventResponse:
        token = bearer_token(context)
        _check_name(request.name)
        violations = []
        if not request.instance_id:
            violations.append(FieldViolation("instance_id", "is required"))
        if not request.event_id or len(request.event_id) > MAX_EVENT_ID:
            violations.append(
                FieldViolation(
                    "event_id", f"is required, at most {MAX_EVENT_ID} characters"
                )
            )
        if request.type not in _REPORT_TYPES:
            violations.append(
                FieldViolation("type", "must be STARTED, STOPPED or ERROR")
            )
        if len(request.message) > MAX_MESSAGE:
            violations.append(
                FieldViolation("message", f"must be at most {MAX_MESSAGE} characters")
            )
        if violations:
            raise InvalidArgumentError.from_violations(violations)
        retry_after = (
            specs.parse_duration(request.retry_after, "retry_after")
            if request.retry_after
            else None
        )

        sequence, duplicate = await self._operator.report(
            token=token,
            name=request.name,
            instance_id=request.instance_id,
            event_id=request.event_id,
            kind=lifecycle_pb2.ReportType.Name(request.type).removeprefix(
                "REPORT_TYPE_"
            ),
            exit_code=request.exit_code if request.HasField("exit_code") else None,
            message=request.message,
            retry_after=retry_after,
        )
        return lifecycle_pb2.ReportEventResponse(sequence=sequence, duplicate=duplicate)


MAX_EVENT_ID = 128
_REPORT_TYPES = frozenset(
    {
        lifecycle_pb2.REPORT_TYPE_STARTED,
        lifecycle_pb2.REPORT_TYPE_STOPPED,
        lifecycle_pb2.REPORT_TYPE_ERROR,
    }
)
"""Report types a workload may send; an unknown enum value is refused."""
MAX_MESSAGE = 4096


def bearer_token(context: Context) -> str:
    """The token of an ``authorization: Bearer <token>`` header, or ''."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def _invalid(field: str, description: str) -> InvalidArgumentError:
    return InvalidArgumentError.from_violations([FieldViolation(field, description)])


def _check_name(name: str, field: str = "name") -> None:
    violations = specs.validate_name(name, field)
    if violations:
        raise InvalidArgumentError.from_violations(violations)


def _page_size(requested: int) -> int:
    if requested < 0:
        raise _invalid("page_size", "must be zero (the default, 100) or positive")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid(
            "page_token", "is not a token this server issued; start again without it"
        ) from None


def _decode_sequence(token: str) -> int:
    text = _decode_token(token)
    if not text.isdigit():
        raise _invalid(
            "page_token", "is not a token this server issued; start again without it"
        )
    return int(text)


_FILTER_KEYS = "state, desired_state, min_replica_set, label.KEY, name"


def _parse_filter(text: str) -> list[Any]:
    """Parses ``key=value`` terms into predicates over records."""
    matches: list[Any] = []
    for term in text.split():
        key, sep, value = term.partition("=")
        if not sep:
            raise _invalid(
                "filter", f"term {term!r} must be key=value; keys: {_FILTER_KEYS}"
            )
        if key == "state":
            wanted = value.upper().removeprefix("CONTAINER_STATE_")
            matches.append(lambda r, w=wanted: r.state.value == w)
        elif key == "desired_state":
            wanted = value.upper().removeprefix("DESIRED_STATE_")
            matches.append(lambda r, w=wanted: r.desired_state.value == w)
        elif key == "min_replica_set":
            if value not in ("true", "false"):
                raise _invalid("filter", "min_replica_set takes true or false")
            matches.append(lambda r, w=(value == "true"): r.min_replica_set is w)
        elif key.startswith("label."):
            label = key.removeprefix("label.")
            matches.append(lambda r, k=label, w=value: r.spec.labels.get(k) == w)
        elif key == "name":
            if value.endswith("*"):
                matches.append(lambda r, p=value[:-1]: r.name.startswith(p))
            else:
                matches.append(lambda r, w=value: r.name == w)
        else:
            raise _invalid("filter", f"unknown key {key!r}; keys: {_FILTER_KEYS}")
    return matches
