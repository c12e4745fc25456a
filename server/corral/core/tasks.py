"""Named, guarded background tasks.

Every task corral starts goes through :func:`spawn`, so a failure is logged
with its name instead of vanishing with the task object, and a forever-loop
that returns is noticed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)

_running: set[asyncio.Task[Any]] = set()


def spawn(
    coro: Coroutine[Any, Any, Any], *, name: str, forever: bool = False
) -> asyncio.Task[Any]:
    """Starts ``coro`` as a task named ``name`` and keeps a reference to it.

    Args:
        coro: the coroutine to run.
        name: the task's name, shown in logs.
        forever: the coroutine is a loop that should never return; warn if it does.
    """
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(lambda done: _finished(done, forever))
    return task


def _finished(task: asyncio.Task[Any], forever: bool) -> None:
    _running.discard(task)
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.error(
            "background task failed",
            extra={"task": task.get_name()},
            exc_info=error,
        )
    elif forever:
        logger.warning("background loop returned", extra={"task": task.get_name()})


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancels ``tasks`` and waits for them to finish."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
