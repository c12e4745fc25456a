"""corral's Python SDK: clients, typed errors, event watches and the workload helper.

Connect and manage the fleet::

    from corral.sdk import Client

    with Client("127.0.0.1:50051") as corral:
        corral.start_container("web", {"command": ["python3", "-m", "http.server"]})
        for event in corral.watch_events(names=["web"]):
            print(event.sequence, event.type)

Report from inside a workload corral runs::

    from corral.sdk import Workload

    workload = Workload()
    workload.run(main)

The generated messages and stubs are in :mod:`corral.v1`. The SDK needs only
grpcio, protobuf and googleapis-common-protos; it never imports the server.
"""

from corral.sdk._client import DEFAULT_ADDRESS, AsyncClient, Client
from corral.sdk._errors import (
    AbortedError,
    AdHocContainerNotAllowedError,
    ContainerNotFoundError,
    ContainerNotStoppedError,
    CorralError,
    CrashLoopDetectedError,
    CursorOutOfRangeError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    MinReplicaSetContainerError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    from_rpc_error,
)
from corral.sdk._specs import format_duration, to_spec
from corral.sdk._watch import AsyncEventWatch, EventWatch
from corral.sdk._workload import StopInfo, Workload

__all__ = [
    "DEFAULT_ADDRESS",
    "AbortedError",
    "AdHocContainerNotAllowedError",
    "AsyncClient",
    "AsyncEventWatch",
    "Client",
    "ContainerNotFoundError",
    "ContainerNotStoppedError",
    "CorralError",
    "CrashLoopDetectedError",
    "CursorOutOfRangeError",
    "DeadlineExceededError",
    "EventWatch",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "MinReplicaSetContainerError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "StopInfo",
    "UnauthenticatedError",
    "UnavailableError",
    "Workload",
    "format_duration",
    "from_rpc_error",
    "to_spec",
]
