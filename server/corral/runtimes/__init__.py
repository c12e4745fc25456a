"""Runtimes: what runs the workloads (local process groups, Docker).

Every runtime satisfies :class:`Runtime`; the operator picks one by name.
"""

from corral.runtimes.base import (
    ExitCallback,
    LaunchRequest,
    Runtime,
    RuntimeHandle,
    RuntimeUnavailableError,
    WorkloadStartError,
)
from corral.runtimes.process import ProcessRuntime

__all__ = [
    "ExitCallback",
    "LaunchRequest",
    "ProcessRuntime",
    "Runtime",
    "RuntimeHandle",
    "RuntimeUnavailableError",
    "WorkloadStartError",
]
