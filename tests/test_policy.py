"""Tests for corral.core.policy: restart semantics rules 1 to 5 of DESIGN.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from corral.core.model import (
    Backoff,
    CrashPolicy,
    ExitInfo,
    ExitReason,
    RestartPolicy,
    RestartWhen,
)
from corral.core.policy import (
    CrashLoopStatus,
    backoff_delay,
    clamp_retry_after,
    crash_loop_status,
    is_crash,
    is_failure,
    next_attempt,
    should_restart,
    trim_history,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def crash_at(time: datetime, reason: ExitReason = ExitReason.SIGNALED) -> ExitInfo:
    return ExitInfo(reason=reason, time=time, signal=9)


def crashes(*offsets: float) -> list[ExitInfo]:
    return [crash_at(T0 + timedelta(seconds=s)) for s in offsets]


# --- rule 2: failure or clean exit -------------------------------------------


@pytest.mark.parametrize(
    ("exit", "failure"),
    [
        (ExitInfo(ExitReason.EXITED, T0, exit_code=0), False),
        (ExitInfo(ExitReason.EXITED, T0, exit_code=75), False),
        (ExitInfo(ExitReason.EXITED, T0, exit_code=1), True),
        (ExitInfo(ExitReason.EXITED, T0, exit_code=None), True),
        (ExitInfo(ExitReason.WORKLOAD_ERROR, T0, exit_code=0), True),
        (ExitInfo(ExitReason.SIGNALED, T0, signal=15), True),
        (ExitInfo(ExitReason.OOM_KILLED, T0, exit_code=137), True),
        (ExitInfo(ExitReason.FAILED_TO_START, T0), True),
        (ExitInfo(ExitReason.UNKNOWN, T0), True),
        (ExitInfo(ExitReason.STOPPED_BY_OPERATOR, T0, exit_code=1), False),
        (ExitInfo(ExitReason.STOPPED_BY_OPERATOR, T0, signal=9), False),
        (ExitInfo(ExitReason.REPLACED, T0, exit_code=143), False),
    ],
    ids=lambda v: v.reason.value if isinstance(v, ExitInfo) else str(v),
)
def test_is_failure_follows_rule_2(exit: ExitInfo, failure: bool) -> None:
    policy = RestartPolicy(success_exit_codes=(75,))
    assert is_failure(exit, policy) is failure


def test_success_exit_codes_only_apply_when_listed() -> None:
    exit = ExitInfo(ExitReason.EXITED, T0, exit_code=75)
    assert is_failure(exit, RestartPolicy()) is True


def test_ordered_stops_are_never_crashes() -> None:
    assert not is_crash(ExitInfo(ExitReason.STOPPED_BY_OPERATOR, T0))
    assert not is_crash(ExitInfo(ExitReason.REPLACED, T0))
    assert is_crash(ExitInfo(ExitReason.EXITED, T0, exit_code=0))


# --- rule 3: when to restart -------------------------------------------------


@pytest.mark.parametrize(
    ("when", "failure", "restart"),
    [
        (RestartWhen.NEVER, True, False),
        (RestartWhen.NEVER, False, False),
        (RestartWhen.ON_FAILURE, True, True),
        (RestartWhen.ON_FAILURE, False, False),
        (RestartWhen.ALWAYS, True, True),
        (RestartWhen.ALWAYS, False, True),
    ],
)
def test_should_restart_follows_rule_3(
    when: RestartWhen, failure: bool, restart: bool
) -> None:
    assert should_restart(RestartPolicy(when=when), failure) is restart


def test_default_policy_restarts_on_failure_only() -> None:
    assert should_restart(RestartPolicy(), True)
    assert not should_restart(RestartPolicy(), False)


# --- rule 4: crash-loop breaker ----------------------------------------------

TEN_MINUTES = CrashPolicy()  # window 10 min, 3 allowed crashes


def test_three_crashes_are_allowed_the_fourth_trips() -> None:
    history = crashes(0, 60, 120)
    now = T0 + timedelta(seconds=120)
    assert crash_loop_status(history, TEN_MINUTES, now) == CrashLoopStatus(
        active=False, count=3, rearm_time=None
    )

    history = crashes(0, 60, 120, 180)
    now = T0 + timedelta(seconds=180)
    assert crash_loop_status(history, TEN_MINUTES, now) == CrashLoopStatus(
        active=True, count=4, rearm_time=T0 + timedelta(minutes=10)
    )


def test_breaker_rearms_when_window_slides_past_the_oldest_crash() -> None:
    history = crashes(0, 60, 120, 180)
    rearm = T0 + timedelta(minutes=10)

    assert crash_loop_status(history, TEN_MINUTES, rearm - SECOND).active
    status = crash_loop_status(history, TEN_MINUTES, rearm)
    assert status == CrashLoopStatus(active=False, count=3, rearm_time=None)


def test_only_the_last_crashes_decide() -> None:
    # The old crash at 0 is out of the window, the four recent ones are in.
    history = crashes(0, 700, 710, 720, 730)
    now = T0 + timedelta(seconds=730)

    status = crash_loop_status(history, TEN_MINUTES, now)

    assert status.active
    assert status.count == 4
    assert status.rearm_time == T0 + timedelta(seconds=700 + 600)


def test_zero_allowed_crashes_trips_on_the_first() -> None:
    policy = CrashPolicy(window=timedelta(minutes=1), allowed_crashes=0)
    status = crash_loop_status(crashes(0), policy, T0)
    assert status.active
    assert status.rearm_time == T0 + timedelta(minutes=1)


def test_ordered_stops_in_history_are_ignored() -> None:
    history = [*crashes(0, 1, 2), crash_at(T0 + 3 * SECOND, ExitReason.REPLACED)]
    assert not crash_loop_status(history, TEN_MINUTES, T0 + 3 * SECOND).active


def test_history_order_does_not_matter() -> None:
    history = crashes(180, 0, 120, 60)
    now = T0 + timedelta(seconds=180)
    assert crash_loop_status(history, TEN_MINUTES, now).active


def test_empty_history_is_not_a_loop() -> None:
    assert crash_loop_status([], TEN_MINUTES, T0) == CrashLoopStatus(False, 0, None)


_policies = st.builds(
    CrashPolicy,
    window=st.timedeltas(min_value=SECOND, max_value=timedelta(hours=2)),
    allowed_crashes=st.integers(min_value=0, max_value=10),
)


@given(_policies, st.floats(min_value=0, max_value=1, exclude_max=True))
def test_allowed_plus_one_crashes_within_window_trip(
    crash: CrashPolicy, spread: float
) -> None:
    # allowed + 1 crashes spread over less than the window, observed at the last.
    span = crash.window * spread
    n = crash.allowed_crashes + 1
    step = span / max(n - 1, 1)
    history = [crash_at(T0 + step * i) for i in range(n)]
    now = history[-1].time
    assume(now - T0 < crash.window)  # rounding of step may not push it out

    status = crash_loop_status(history, crash, now)

    assert status.active
    assert status.count == n
    assert status.rearm_time == T0 + crash.window
    assert not crash_loop_status(history[:-1], crash, now).active


@given(
    _policies,
    st.integers(min_value=1, max_value=30),
    st.floats(min_value=1.0, max_value=3.0),
)
def test_crashes_spaced_wider_than_window_over_allowed_never_trip(
    crash: CrashPolicy, count: int, widen: float
) -> None:
    # With gaps >= window / allowed, any allowed + 1 consecutive crashes span
    # at least the whole window.
    assume(crash.allowed_crashes > 0)
    gap = crash.window / crash.allowed_crashes * widen + timedelta(microseconds=1)
    history = [crash_at(T0 + gap * i) for i in range(count)]

    for i, stop in enumerate(history):
        for now in (stop.time, stop.time + gap / 2):
            assert not crash_loop_status(history[: i + 1], crash, now).active


@given(
    _policies,
    st.lists(st.integers(min_value=0, max_value=7200), max_size=20),
    st.integers(min_value=0, max_value=7200),
)
def test_breaker_rearms_by_itself_at_rearm_time(
    crash: CrashPolicy, offsets: list[int], now_offset: int
) -> None:
    history = [crash_at(T0 + timedelta(seconds=s)) for s in offsets]
    now = T0 + timedelta(seconds=max([now_offset, *offsets]))

    status = crash_loop_status(history, crash, now)

    if status.active:
        assert status.rearm_time is not None
        assert status.rearm_time > now
        assert not crash_loop_status(history, crash, status.rearm_time).active
        assert crash_loop_status(
            history, crash, status.rearm_time - SECOND / 1000
        ).active
    else:
        assert status.rearm_time is None


@given(
    _policies,
    st.lists(st.integers(min_value=0, max_value=7200), max_size=80),
    st.integers(min_value=0, max_value=7200),
    st.integers(min_value=0, max_value=60),
)
def test_trimming_never_changes_the_verdict(
    crash: CrashPolicy, offsets: list[int], now_offset: int, limit: int
) -> None:
    history = [crash_at(T0 + timedelta(seconds=s)) for s in offsets]
    now = T0 + timedelta(seconds=max([now_offset, *offsets]))

    trimmed = trim_history(history, crash, now, limit)
    before = crash_loop_status(history, crash, now)
    after = crash_loop_status(trimmed, crash, now)

    assert (after.active, after.rearm_time) == (before.active, before.rearm_time)
    assert len(trimmed) <= max(limit, crash.allowed_crashes + 1)
    assert all(now - stop.time < crash.window for stop in trimmed)


def test_trim_history_keeps_the_newest_within_the_window() -> None:
    history = crashes(0, 700, 710, 720, 730)
    now = T0 + timedelta(seconds=730)

    assert trim_history(history, TEN_MINUTES, now) == tuple(history[1:])
    assert trim_history(history, TEN_MINUTES, now, limit=2) == tuple(history[1:])
    wide = CrashPolicy(window=timedelta(hours=1), allowed_crashes=1)
    assert trim_history(history, wide, now, limit=3) == tuple(history[2:])


# --- rule 5: backoff ---------------------------------------------------------

DEFAULT = Backoff()  # 1 s, x2, 60 s cap, reset after 60 s, jitter 0.1


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(DEFAULT, attempt, 0.0) for attempt in range(8)]
    assert delays == [SECOND * s for s in (1, 2, 4, 8, 16, 32, 60, 60)]


def test_backoff_survives_huge_attempts() -> None:
    assert backoff_delay(DEFAULT, 10**9, 0.0) == DEFAULT.max
    assert backoff_delay(Backoff(multiplier=1.0), 10**9, 0.0) == SECOND


def test_jitter_adds_a_fraction_but_never_exceeds_the_cap() -> None:
    assert backoff_delay(DEFAULT, 0, 0.5) == SECOND * 1.05
    assert backoff_delay(DEFAULT, 3, 0.99) == SECOND * 8 * 1.099
    assert backoff_delay(DEFAULT, 6, 0.99) == DEFAULT.max
    assert backoff_delay(Backoff(jitter=1.0), 5, 0.9) == DEFAULT.max


def test_zero_initial_means_no_delay() -> None:
    assert backoff_delay(Backoff(initial=timedelta(0)), 7, 0.9) == timedelta(0)


def test_backoff_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(DEFAULT, -1, 0.0)
    with pytest.raises(ValueError, match="random_fraction"):
        backoff_delay(DEFAULT, 0, 1.5)


_backoffs = st.builds(
    Backoff,
    initial=st.timedeltas(min_value=timedelta(0), max_value=timedelta(minutes=5)),
    max=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=1)),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    reset_after=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=1)),
    jitter=st.floats(min_value=0.0, max_value=1.0),
).filter(lambda b: b.max >= b.initial)
_fractions = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(_backoffs, st.integers(min_value=0, max_value=200))
def test_unjittered_backoff_is_monotone(backoff: Backoff, attempt: int) -> None:
    assert backoff_delay(backoff, attempt, 0.0) <= backoff_delay(
        backoff, attempt + 1, 0.0
    )


@given(_backoffs, st.integers(min_value=0, max_value=10**6), _fractions)
def test_backoff_stays_within_initial_and_max(
    backoff: Backoff, attempt: int, fraction: float
) -> None:
    delay = backoff_delay(backoff, attempt, fraction)

    assert delay <= backoff.max
    if backoff.initial > timedelta(0):
        assert delay >= backoff.initial
    else:
        assert delay == timedelta(0)


@given(_backoffs, st.integers(min_value=0, max_value=200), _fractions)
def test_jitter_never_shortens_the_delay(
    backoff: Backoff, attempt: int, fraction: float
) -> None:
    plain = backoff_delay(backoff, attempt, 0.0)
    jittered = backoff_delay(backoff, attempt, fraction)
    assert plain <= jittered <= max(plain, backoff.max)
    assert jittered <= plain * (1 + backoff.jitter) + timedelta(microseconds=1)


def test_next_attempt_counts_quick_crashes_and_resets_after_uptime() -> None:
    assert next_attempt(-1, SECOND, DEFAULT) == 0
    assert next_attempt(0, SECOND, DEFAULT) == 1
    assert next_attempt(4, None, DEFAULT) == 5
    assert next_attempt(4, timedelta(seconds=59), DEFAULT) == 5
    assert next_attempt(4, timedelta(seconds=60), DEFAULT) == 0
    assert next_attempt(4, timedelta(hours=3), DEFAULT) == 0


@given(_backoffs, st.integers(min_value=-1, max_value=100), _fractions)
def test_reset_brings_the_delay_back_to_initial(
    backoff: Backoff, previous: int, fraction: float
) -> None:
    attempt = next_attempt(previous, backoff.reset_after, backoff)

    assert attempt == 0
    assert backoff_delay(backoff, attempt, 0.0) == backoff.initial


def test_retry_after_is_clamped_to_the_backoff_range() -> None:
    assert clamp_retry_after(timedelta(0), DEFAULT) == SECOND
    assert clamp_retry_after(-SECOND, DEFAULT) == SECOND
    assert clamp_retry_after(SECOND * 30, DEFAULT) == SECOND * 30
    assert clamp_retry_after(timedelta(hours=1), DEFAULT) == DEFAULT.max
