"""Throttling of failed verifies per NIST SP 800-63B 5.2.2, as pure rules.

State is kept per (collection, claimed subject, policy) in the store so every worker
sees the same count. The claimed subject need not exist: unknown subjects lock exactly
like known ones, so a 423 reveals nothing about who is enrolled.

`failures` consecutive no_match results lock for `base_delay_seconds`; once locked,
every further failure (after the lock ends) locks again for twice as long, up to
`max_delay_seconds`. A match resets everything; so does a quiet `window_minutes`
after the last failure or lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from faceapi.domain.errors import FaceApiError
from faceapi.domain.policies import Lockout


class Locked(FaceApiError):
    code = "locked"


@dataclass(frozen=True)
class LockoutKey:
    collection_id: str
    subject_id: str
    policy_name: str


@dataclass(frozen=True)
class LockoutState:
    key: LockoutKey
    failures: int = 0
    lock_count: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None

    def retry_after(self, now: datetime) -> int | None:
        """Whole seconds until the lock ends, or None when not locked."""
        if self.locked_until is None or now >= self.locked_until:
            return None
        return max(1, math.ceil((self.locked_until - now).total_seconds()))


def _quiet_since(state: LockoutState) -> datetime | None:
    moments = [m for m in (state.last_failure_at, state.locked_until) if m is not None]
    return max(moments) if moments else None


def after_failure(state: LockoutState, rule: Lockout, now: datetime) -> tuple[LockoutState, bool]:
    """Count one failure; returns the new state and whether it locked just now."""
    quiet = _quiet_since(state)
    if quiet is not None and now - quiet > timedelta(minutes=rule.window_minutes):
        state = LockoutState(state.key)
    failures = state.failures + 1
    state = replace(state, failures=failures, last_failure_at=now)
    if failures < rule.failures:
        return state, False
    lock_count = state.lock_count + 1
    delay = min(rule.base_delay_seconds * 2 ** (lock_count - 1), rule.max_delay_seconds)
    return replace(state, lock_count=lock_count,
                   locked_until=now + timedelta(seconds=delay)), True


def locked_error(state: LockoutState, now: datetime) -> Locked:
    retry_after = state.retry_after(now) or 1
    return Locked("too many failed attempts for this subject; try again later",
                  details={"retry_after_seconds": retry_after}, retry_after=retry_after)


