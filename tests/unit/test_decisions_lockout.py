"""Lockout rules (NIST SP 800-63B throttling) as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from faceapi.domain.lockout import LockoutKey, LockoutState, after_failure
from faceapi.domain.policies import Lockout

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RULE = Lockout(failures=5, window_minutes=60, base_delay_seconds=60, max_delay_seconds=240)
KEY = LockoutKey("c", "s", "login")


def fail(state: LockoutState, times: int, at: datetime) -> tuple[LockoutState, bool]:
    locked = False
    for _ in range(times):
        state, locked = after_failure(state, RULE, at)
    return state, locked


def test_the_fifth_consecutive_failure_locks_for_the_base_delay() -> None:
    state, locked = fail(LockoutState(KEY), 4, NOW)
    assert not locked
    assert state.retry_after(NOW) is None
    state, locked = after_failure(state, RULE, NOW)
    assert locked
    assert state.retry_after(NOW) == 60


def test_each_failure_after_a_lock_doubles_the_delay_up_to_the_maximum() -> None:
    state, _ = fail(LockoutState(KEY), 5, NOW)
    delays = []
    at = NOW
    for _ in range(4):
        at = state.locked_until or at
        state, locked = after_failure(state, RULE, at)
        assert locked
        delays.append(state.retry_after(at))
    assert delays == [120, 240, 240, 240]


def test_failures_further_apart_than_the_window_start_a_new_count() -> None:
    state, _ = fail(LockoutState(KEY), 4, NOW)
    state, locked = after_failure(state, RULE, NOW + timedelta(minutes=61))
    assert not locked
    assert state.failures == 1
