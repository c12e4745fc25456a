"""Typed errors decoded from corral's rich gRPC statuses.

corral answers every refusal with one canonical status code and a
``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer: an
``ErrorInfo`` with an UPPER_SNAKE reason, plus ``ResourceInfo`` and
``BadRequest`` where they fit. :func:`from_rpc_error` turns that into one of
the classes below, picked by the reason first and by the status code second,
so a client catches ``ContainerNotFoundError`` instead of comparing numbers.

    CorralError                              any other status code
    ├── NotFoundError                        NOT_FOUND
    │   └── ContainerNotFoundError           CONTAINER_NOT_FOUND
    ├── InvalidArgumentError                 INVALID_ARGUMENT (field_violations)
    ├── FailedPreconditionError              FAILED_PRECONDITION
    │   ├── CrashLoopDetectedError           CRASH_LOOP_DETECTED
    │   ├── ContainerNotStoppedError         CONTAINER_NOT_STOPPED
    │   ├── MinReplicaSetContainerError      MIN_REPLICA_SET_CONTAINER
    │   └── AdHocContainerNotAllowedError    AD_HOC_CONTAINER_NOT_ALLOWED
    ├── AbortedError                         ABORTED (retryable)
    ├── ResourceExhaustedError               RESOURCE_EXHAUSTED
    ├── CursorOutOfRangeError                OUT_OF_RANGE (oldest/head sequence)
    ├── UnauthenticatedError                 UNAUTHENTICATED
    ├── PermissionDeniedError                PERMISSION_DENIED
    ├── DeadlineExceededError                DEADLINE_EXCEEDED (retryable)
    └── UnavailableError                     UNAVAILABLE (retryable)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
"""Trailer that carries the serialized ``google.rpc.Status``."""


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One bad field of a refused request.

    Attributes:
        field: dotted path of the field, such as ``spec.stop_grace_period``.
        description: why it was refused and what would be accepted.
    """

    field: str
    description: str


class CorralError(Exception):
    """Root of the SDK's errors: a call corral (or the network) refused.

    Attributes:
        code: the gRPC status code.
        message: the human-readable message; corral's say what to do next.
        reason: the UPPER_SNAKE ``ErrorInfo.reason``, or the code's name when
            the status carried no details (for example a lost connection).
        metadata: the ``ErrorInfo.metadata`` facts.
        field_violations: the ``BadRequest`` field violations, if any.
        resource_name: the container named by ``ResourceInfo``, if any.
    """

    retryable: bool = False
    """Whether the same request may succeed if simply sent again later."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        resource_name: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or code.name
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations = tuple(field_violations)
        self.resource_name = resource_name

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r})"
        )


class NotFoundError(CorralError):
    """Something the request names does not exist."""


class ContainerNotFoundError(NotFoundError):
    """The named container does not exist; pass a spec to create it."""


class InvalidArgumentError(CorralError):
    """The request or spec is invalid; ``field_violations`` names each bad field."""


class FailedPreconditionError(CorralError):
    """The request is valid but the container's state does not allow it."""


class CrashLoopDetectedError(FailedPreconditionError):
    """The container is crash looping: start it with ``force=True`` or clear
    its crash history first."""


class ContainerNotStoppedError(FailedPreconditionError):
    """The operation needs the container stopped first."""


class MinReplicaSetContainerError(FailedPreconditionError):
    """The container is declared in the fleet file (the min replica set)."""


class AdHocContainerNotAllowedError(FailedPreconditionError):
    """The operator refuses containers its fleet file does not declare."""


class AbortedError(CorralError):
    """A concurrent change won; sending the request again may succeed."""

    retryable = True


class ResourceExhaustedError(CorralError):
    """A limit was reached (containers, watchers, message size)."""


class CursorOutOfRangeError(CorralError):
    """An event cursor is older than the log's retention or past its head.

    Attributes:
        oldest_sequence: the oldest sequence the log still holds, or ``None``
            when the server did not say.
        head_sequence: the newest sequence in the log, or ``None``.
    """

    def __init__(self, code: grpc.StatusCode, message: str, **kwargs: Any) -> None:
        super().__init__(code, message, **kwargs)
        self.oldest_sequence = _int_or_none(self.metadata.get("oldest_sequence"))
        self.head_sequence = _int_or_none(self.metadata.get("head_sequence"))


class UnauthenticatedError(CorralError):
    """Credentials are missing or not recognised."""


class PermissionDeniedError(CorralError):
    """The credentials do not allow this call."""


class DeadlineExceededError(CorralError):
    """The call's timeout ran out before corral answered."""

    retryable = True


class UnavailableError(CorralError):
    """corral is unreachable or shutting down; retry, possibly elsewhere."""

    retryable = True


_BY_REASON: dict[str, type[CorralError]] = {
    "CONTAINER_NOT_FOUND": ContainerNotFoundError,
    "CRASH_LOOP_DETECTED": CrashLoopDetectedError,
    "CONTAINER_NOT_STOPPED": ContainerNotStoppedError,
    "MIN_REPLICA_SET_CONTAINER": MinReplicaSetContainerError,
    "AD_HOC_CONTAINER_NOT_ALLOWED": AdHocContainerNotAllowedError,
    "CURSOR_OUT_OF_RANGE": CursorOutOfRangeError,
}

_BY_CODE: dict[grpc.StatusCode, type[CorralError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.OUT_OF_RANGE: CursorOutOfRangeError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


def from_rpc_error(error: grpc.RpcError) -> CorralError:
    """Decodes a failed call (sync or asyncio) into the matching typed error.

    Args:
        error: the exception grpc raised; it is also a ``grpc.Call`` (sync)
            or a ``grpc.aio.AioRpcError`` carrying code, details and trailers.

    Returns:
        The most specific :class:`CorralError` subclass for its reason, else
        for its status code, else :class:`CorralError` itself.
    """
    call: Any = error
    code: grpc.StatusCode = call.code() or grpc.StatusCode.UNKNOWN
    message: str = call.details() or code.name
    status = _status_details(call.trailing_metadata())

    reason = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    resource_name = ""
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata.update(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(
                FieldViolation(v.field, v.description) for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            resource = error_details_pb2.ResourceInfo()
            detail.Unpack(resource)
            resource_name = resource.resource_name

    kind = _BY_REASON.get(reason) or _BY_CODE.get(code, CorralError)
    return kind(
        code,
        message,
        reason=reason,
        metadata=metadata,
        field_violations=violations,
        resource_name=resource_name,
    )


def _status_details(trailers: Iterable[tuple[str, Any]] | None) -> Any:
    """The ``google.rpc.Status`` in the trailers, or ``None``.

    A status that does not parse is ignored on purpose: the code and message
    alone still make a usable (if less specific) error.
    """
    for key, value in trailers or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        return status
    return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
