"""The one place where corral's errors become gRPC statuses.

Each :class:`~corral.core.errors.CorralError` class maps to one status code.
The status carries ``google.rpc.Status`` details: always an ``ErrorInfo`` with
the UPPER_SNAKE reason, plus ``ResourceInfo`` for a named container,
``BadRequest`` for field violations and ``PreconditionFailure`` for state
conflicts. Anything else that escapes a handler is logged with its traceback
and answered INTERNAL without leaking its text.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from corral.core import errors
from corral.store import StoreError

logger = logging.getLogger(__name__)

DOMAIN = "corral.dev"

_CODES: list[tuple[type[errors.CorralError], grpc.StatusCode]] = [
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.AbortedError, grpc.StatusCode.ABORTED),
    (errors.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
]


def status_code(error: errors.CorralError) -> grpc.StatusCode:
    """The gRPC status code for one of corral's errors."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def to_status(error: errors.CorralError) -> grpc.Status:
    """Builds the rich status (with details) for ``error``."""
    code = status_code(error)
    details: list[Any] = [
        error_details_pb2.ErrorInfo(
            reason=error.reason, domain=DOMAIN, metadata=error.metadata
        )
    ]
    if error.resource_name:
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type="corral.v1.Container",
                resource_name=error.resource_name,
                description=error.message,
            )
        )
    if isinstance(error, errors.InvalidArgumentError) and error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=violation.field, description=violation.description
                    )
                    for violation in error.violations
                ]
            )
        )
    if isinstance(error, errors.FailedPreconditionError):
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=error.reason,
                        subject=error.resource_name,
                        description=error.message,
                    )
                ]
            )
        )
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=packed
    )
    return rpc_status.to_status(status)


Handler = TypeVar("Handler", bound=Callable[..., Any])


def translate_unary(handler: Handler) -> Handler:
    """Wraps a unary servicer method so errors leave as proper statuses."""

    @functools.wraps(handler)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except errors.CorralError as error:
            await _abort(context, error)
        except Exception:
            await _internal(context, handler.__name__)

    return wrapper  # type: ignore[return-value]  # same signature as the handler


def translate_stream(handler: Handler) -> Handler:
    """Wraps a server-streaming servicer method likewise."""

    @functools.wraps(handler)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for item in handler(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except errors.CorralError as error:
            await _abort(context, error)
        except Exception:
            await _internal(context, handler.__name__)

    return wrapper  # type: ignore[return-value]  # same signature as the handler


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], error: errors.CorralError
) -> None:
    logger.debug(
        "request refused",
        extra={"reason": error.reason, "container": error.resource_name},
    )
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _internal(context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
    logger.exception("request failed", extra={"method": method})
    await context.abort(
        grpc.StatusCode.INTERNAL,
        "internal error in corral; the operator's log has details",
    )
