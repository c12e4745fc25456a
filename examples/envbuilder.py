"""The example fleet's environment builder (``env_builder = "envbuilder:build"``).

corral calls :func:`build` for every start, with the container's spec and the
operator's own environment, and adds what it returns to the workload's
environment (over the spec's ``env``). This one turns the spec's free-form
``config`` table into ``WORKER_*`` variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def build(spec: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """Maps ``config.queue`` and ``config.concurrency`` to environment variables.

    Args:
        spec: the container's spec (``corral.core.model.ContainerSpec``); only
            its ``config`` mapping is read.
        environ: the operator's environment; unused here, and never copied
            wholesale, since it may hold the operator's credentials.

    Returns:
        ``WORKER_QUEUE`` and ``WORKER_CONCURRENCY`` for the keys the config
        has; nothing for a container without a config.
    """
    config: Mapping[str, Any] = getattr(spec, "config", None) or {}
    env = {}
    if "queue" in config:
        env["WORKER_QUEUE"] = str(config["queue"])
    if "concurrency" in config:
        env["WORKER_CONCURRENCY"] = str(int(config["concurrency"]))
    return env
