"""Restart policy decisions as pure functions of record, exit and clock.

Every function here takes the current time as an argument and does no I/O,
so the rules of DESIGN.md "Restart semantics" are tested directly, with
property tests, without sleeping:

- :func:`is_failure` (rule 2) tells a failure from a clean exit.
- :func:`should_restart` (rule 3) applies ``never`` / ``on_failure`` /
  ``always``.
- :func:`crash_loop_status` (rule 4) is the crash-loop breaker; it re-arms by
  itself as the window slides past the crashes.
- :func:`backoff_delay`, :func:`next_attempt` and :func:`clamp_retry_after`
  (rule 5) compute how long to wait before a restart.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from corral.core.model import (
    Backoff,
    CrashPolicy,
    ExitInfo,
    ExitReason,
    RestartPolicy,
    RestartWhen,
)

__all__ = [
    "CrashLoopStatus",
    "backoff_delay",
    "clamp_retry_after",
    "crash_loop_status",
    "is_crash",
    "is_failure",
    "next_attempt",
    "should_restart",
    "trim_history",
]

_ORDERED_STOPS = frozenset({ExitReason.STOPPED_BY_OPERATOR, ExitReason.REPLACED})
"""Exit reasons of stops corral itself ordered: never failures, never crashes."""


def is_crash(exit: ExitInfo) -> bool:
    """Tells whether an exit may count as an unexpected stop at all.

    Stops corral ordered (Stop, Restart, Delete, a replaced spec) are never
    crashes, whatever code or signal they ended with (rule 1). Whether any
    other exit was unexpected depends on the desired state, which the caller
    knows; this only rules out the reasons that can never be.
    """
    return exit.reason not in _ORDERED_STOPS


def is_failure(exit: ExitInfo, policy: RestartPolicy) -> bool:
    """Tells a failure from a clean exit (rule 2).

    A clean exit is ``EXITED`` with code 0 or one of the policy's
    ``success_exit_codes``. An ``EXITED`` without a code is treated as an
    unknown status, a failure. A reported error, a signal, an OOM kill, a
    failed start and an unknown status are failures. Stops corral ordered are
    never failures.

    Args:
        exit: how the instance ended.
        policy: the container's restart policy.

    Returns:
        True when the exit is a failure.
    """
    if exit.reason in _ORDERED_STOPS:
        return False
    if exit.reason is ExitReason.EXITED and exit.exit_code is not None:
        clean = exit.exit_code == 0 or exit.exit_code in policy.success_exit_codes
        return not clean
    return True


def should_restart(policy: RestartPolicy, failure: bool) -> bool:
    """Applies the policy's ``when`` to an unexpected stop (rule 3).

    Args:
        policy: the container's restart policy.
        failure: what :func:`is_failure` said about the stop.

    Returns:
        True when the container is to be restarted (after a backoff, and
        only if it is not crash looping).
    """
    if policy.when is RestartWhen.ALWAYS:
        return True
    if policy.when is RestartWhen.ON_FAILURE:
        return failure
    return False


@dataclasses.dataclass(frozen=True)
class CrashLoopStatus:
    """The crash-loop breaker's verdict at one moment."""

    active: bool
    """True while the container is crash looping: nothing restarts it."""

    count: int
    """Unexpected stops inside the window ending now."""

    rearm_time: datetime | None
    """When the breaker re-arms by itself if nothing else happens; set only
    while ``active``."""


def crash_loop_status(
    history: Sequence[ExitInfo], crash: CrashPolicy, now: datetime
) -> CrashLoopStatus:
    """Decides whether a container is crash looping (rule 4).

    It is when its last ``allowed_crashes + 1`` unexpected stops all fall
    within ``window`` ending ``now``: ``now - oldest.time < window``, where
    ``oldest`` is the earliest of those stops. It re-arms at
    ``oldest.time + window``, when the window slides past that stop.

    Args:
        history: the unexpected stops, in any order. Stops corral ordered
            are ignored if present.
        crash: the breaker's settings.
        now: the current time.

    Returns:
        The breaker's state at ``now``.
    """
    stops = _sorted_crashes(history)
    count = sum(1 for stop in stops if now - stop.time < crash.window)

    needed = crash.allowed_crashes + 1
    if needed <= 0 or len(stops) < needed:
        return CrashLoopStatus(active=False, count=count, rearm_time=None)
    oldest = stops[-needed]
    if now - oldest.time >= crash.window:
        return CrashLoopStatus(active=False, count=count, rearm_time=None)

    return CrashLoopStatus(
        active=True, count=count, rearm_time=oldest.time + crash.window
    )


def trim_history(
    history: Sequence[ExitInfo], crash: CrashPolicy, now: datetime, limit: int = 50
) -> tuple[ExitInfo, ...]:
    """Drops the stops that no longer matter, so the history stays bounded.

    Keeps the stops inside the window ending ``now``, newest first, at most
    ``limit`` of them, but never fewer than the ``allowed_crashes + 1`` the
    breaker looks at, so trimming never changes :func:`crash_loop_status`'s
    ``active`` or ``rearm_time``.

    Args:
        history: the unexpected stops, in any order.
        crash: the breaker's settings.
        now: the current time.
        limit: how many stops to keep at most (see above).

    Returns:
        The kept stops, oldest first.
    """
    keep = max(limit, crash.allowed_crashes + 1, 0)
    recent = [
        stop for stop in _sorted_crashes(history) if now - stop.time < crash.window
    ]
    return tuple(recent[len(recent) - keep :]) if len(recent) > keep else tuple(recent)


def _sorted_crashes(history: Sequence[ExitInfo]) -> list[ExitInfo]:
    """The stops that count as crashes, oldest first (stable for equal times)."""
    return sorted((stop for stop in history if is_crash(stop)), key=lambda s: s.time)


def backoff_delay(backoff: Backoff, attempt: int, random_fraction: float) -> timedelta:
    """Computes the delay before restart number ``attempt`` (rule 5).

    The un-jittered delay is ``initial * multiplier**attempt`` capped at
    ``max``. Jitter then adds up to ``jitter`` of it:
    ``delay * (1 + jitter * random_fraction)``, capped at ``max`` again. The
    result never exceeds ``max`` (a configured cap is a promise to the
    person who set it) and never goes below the un-jittered delay. The
    price is that containers at the cap restart in step; they are spread by
    their earlier, uncapped delays. With ``initial`` zero the delay is
    always zero.

    Args:
        backoff: the policy's backoff settings.
        attempt: 0 for the first restart after a reset, then 1, 2, ...
        random_fraction: a uniform random number in ``[0, 1)``, supplied
            by the caller so that this function stays deterministic.

    Returns:
        The delay, in ``[min(initial, max), max]``.

    Raises:
        ValueError: ``attempt`` is negative or ``random_fraction`` is
            outside ``[0, 1]``.
    """
    if attempt < 0:
        raise ValueError(f"attempt must not be negative, got {attempt}")
    if not 0 <= random_fraction <= 1:
        raise ValueError(f"random_fraction must be in [0, 1], got {random_fraction}")
    if backoff.initial <= timedelta(0):
        return timedelta(0)

    delay = _unjittered_delay(backoff, attempt)
    jittered = delay * (1 + backoff.jitter * random_fraction)

    return min(jittered, backoff.max)


def _unjittered_delay(backoff: Backoff, attempt: int) -> timedelta:
    """``initial * multiplier**attempt`` capped at ``max``, without overflow."""
    if backoff.initial >= backoff.max:
        return backoff.max
    if backoff.multiplier <= 1 or attempt == 0:
        return backoff.initial

    # Compare exponents so that a large attempt never overflows the float.
    headroom = math.log(backoff.max / backoff.initial)
    if attempt * math.log(backoff.multiplier) >= headroom:
        return backoff.max
    return min(backoff.max, backoff.initial * backoff.multiplier**attempt)


def next_attempt(
    previous_attempt: int, uptime: timedelta | None, backoff: Backoff
) -> int:
    """Picks the attempt number for the next restart delay.

    An instance that stayed up at least ``reset_after`` resets the sequence
    to 0 (the next delay is ``initial`` again); otherwise the sequence goes
    on from ``previous_attempt``.

    Args:
        previous_attempt: the attempt used for the last restart delay, or
            -1 when there was none yet (so the first restart is attempt 0).
        uptime: how long the instance that just ended ran; None when it
            never started.
        backoff: the policy's backoff settings.

    Returns:
        The attempt to pass to :func:`backoff_delay`.
    """
    if uptime is not None and uptime >= backoff.reset_after:
        return 0
    return max(previous_attempt, -1) + 1


def clamp_retry_after(requested: timedelta, backoff: Backoff) -> timedelta:
    """Clamps a workload's requested restart delay into ``[initial, max]``.

    A workload may ask for a delay with its ERROR report; it may not wait
    less than the policy's first delay (no hot loop) nor more than its cap
    (no indefinite parking). If the policy is inconsistent (``max`` below
    ``initial``), ``max`` wins, as it does in :func:`backoff_delay`.

    Args:
        requested: the delay the workload asked for.
        backoff: the policy's backoff settings.

    Returns:
        The delay to use.
    """
    return min(max(requested, backoff.initial), backoff.max)
