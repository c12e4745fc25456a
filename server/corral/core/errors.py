"""The errors corral raises, one class per case a client must tell apart.

The API layer maps each class to its gRPC status in one place
(``corral.api.errors``); lower layers only raise these.

    CorralError
    ├── NotFoundError                    NOT_FOUND
    ├── InvalidArgumentError             INVALID_ARGUMENT (field violations)
    ├── FailedPreconditionError          FAILED_PRECONDITION
    │   ├── CrashLoopDetectedError
    │   ├── ContainerNotStoppedError
    │   ├── MinReplicaSetContainerError
    │   └── AdHocContainerNotAllowedError
    ├── AbortedError                     ABORTED
    ├── ResourceExhaustedError           RESOURCE_EXHAUSTED
    ├── OutOfRangeError                  OUT_OF_RANGE
    ├── UnauthenticatedError             UNAUTHENTICATED
    ├── PermissionDeniedError            PERMISSION_DENIED
    └── UnavailableError                 UNAVAILABLE
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path (``spec.restart_policy.crash.window``) and why."""

    field: str
    description: str


class CorralError(Exception):
    """Root of corral's errors.

    Attributes:
        reason: UPPER_SNAKE machine-readable reason (``google.rpc.ErrorInfo``).
        resource_name: the container concerned, if any.
        metadata: extra string facts for ``ErrorInfo.metadata``.
    """

    reason: str = "CORRAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        resource_name: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.resource_name = resource_name
        self.metadata = dict(metadata or {})


class NotFoundError(CorralError):
    """The named container does not exist."""

    reason = "CONTAINER_NOT_FOUND"


class InvalidArgumentError(CorralError):
    """A request or spec is invalid; ``violations`` names each bad field."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: Sequence[FieldViolation] = (),
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]  # keyword-only pass-through
        self.violations = tuple(violations)

    @classmethod
    def from_violations(
        cls, violations: Sequence[FieldViolation]
    ) -> InvalidArgumentError:
        """Builds one error whose message lists every violation."""
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(f"invalid request: {text}", violations)


class FailedPreconditionError(CorralError):
    """The request is valid but the container's state does not allow it."""

    reason = "FAILED_PRECONDITION"


class CrashLoopDetectedError(FailedPreconditionError):
    """The container is crash looping; start it with force or clear its history."""

    reason = "CRASH_LOOP_DETECTED"


class ContainerNotStoppedError(FailedPreconditionError):
    """The operation needs the container stopped first."""

    reason = "CONTAINER_NOT_STOPPED"


class MinReplicaSetContainerError(FailedPreconditionError):
    """The container belongs to the min replica set declared in the fleet file."""

    reason = "MIN_REPLICA_SET_CONTAINER"


class AdHocContainerNotAllowedError(FailedPreconditionError):
    """The operator refuses containers that the fleet file does not declare."""

    reason = "AD_HOC_CONTAINER_NOT_ALLOWED"


class AbortedError(CorralError):
    """A concurrent change won; retry the request."""

    reason = "ABORTED"


class ResourceExhaustedError(CorralError):
    """A limit was reached (containers, watchers, sizes)."""

    reason = "RESOURCE_EXHAUSTED"


class OutOfRangeError(CorralError):
    """A cursor is older than retention or past the head."""

    reason = "CURSOR_OUT_OF_RANGE"


class UnauthenticatedError(CorralError):
    """Credentials are missing or not recognised."""

    reason = "UNAUTHENTICATED"


class PermissionDeniedError(CorralError):
    """The credentials do not allow this call."""

    reason = "PERMISSION_DENIED"


class UnavailableError(CorralError):
    """The operator is shutting down or a dependency is unreachable; retry."""

    reason = "UNAVAILABLE"
