"""Use case: failed-verify lockout (NIST SP 800-63B 5.2.2) and the operator's unlock.

The rules are in faceapi/domain/lockout.py; this module applies them inside the
verify's unit of work (so the count, the decision and their audit events commit
together) and offers the audited unlock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.decisions import Outcome
from faceapi.domain.errors import NotFound
from faceapi.domain.lockout import LockoutKey, LockoutState, after_failure
from faceapi.domain.policies import Policy
from faceapi.services.collection_lookup import load_collection, resource
from faceapi.services.ports import UnitOfWork


def current_lock(uow: UnitOfWork, key: LockoutKey, now: datetime) -> LockoutState | None:
    """The state if the key is locked now, else None (a plain read, no row lock)."""
    state = uow.lockouts.get(key)
    return state if state is not None and state.retry_after(now) is not None else None


def subject_lock(uow: UnitOfWork, collection_id: str, subject_id: str,
                 now: datetime) -> LockoutState | None:
    """The longest lock on a subject under any policy, or None. A lock is a property of
    the subject: locked under `login`, it is not verifiable under `identity_check` or
    any other policy either."""
    locked = [s for s in uow.lockouts.for_subject(collection_id, subject_id)
              if s.retry_after(now) is not None]
    return max(locked, key=lambda s: s.retry_after(now) or 0) if locked else None


def locked_subjects(uow: UnitOfWork, collection_id: str, subject_ids: Iterable[str],
                    now: datetime) -> set[str]:
    """Which of these subjects are locked now (under any policy): searches leave them
    out of every answer, so a lock cannot be walked around by searching instead."""
    return {s.key.subject_id for s in uow.lockouts.for_subjects(collection_id,
                                                                list(set(subject_ids)))
            if s.retry_after(now) is not None}


@dataclass(frozen=True)
class LockoutUpdate:
    state: LockoutState | None
    locked_now: bool = False
    was_locked: bool = False  # another request locked the key while this one worked


def apply_result(uow: UnitOfWork, policy: Policy, key: LockoutKey, outcome: Outcome,
                 now: datetime) -> LockoutUpdate:
    """Count a no_match, reset on a match, inside the caller's unit of work.

    A decision that waits for review counts as a failure too: its caller learns nothing
    until a reviewer decides, so each attempt must spend the subject's budget, or an
    app could send probes without limit (identity_check).

    The row is locked (PostgreSQL FOR UPDATE; SQLite's write lock) so failures from
    every worker are counted exactly once each."""
    rule = policy.lockout
    if rule is None or outcome not in (Outcome.MATCH, Outcome.NO_MATCH,
                                       Outcome.PENDING_REVIEW):
        return LockoutUpdate(None)
    state = uow.lockouts.get_for_update(key)
    if state.retry_after(now) is not None:
        return LockoutUpdate(state, was_locked=True)
    if outcome is Outcome.MATCH:
        uow.lockouts.delete(key)
        return LockoutUpdate(None)
    state, locked_now = after_failure(state, rule, now)
    uow.lockouts.save(state)
    return LockoutUpdate(state, locked_now=locked_now)


def audit_lock(uow: UnitOfWork, state: LockoutState, policy: Policy, *, actor: Actor,
               now: datetime, request_id: str | None) -> None:
    key = state.key
    uow.audit.append(AuditEvent(
        action=Action.LOCKOUT_LOCK, outcome="locked", actor=actor,
        resource=resource(key.collection_id, key.subject_id), subject_id=key.subject_id,
        policy_name=policy.name, policy_version=policy.version,
        scores={"failures": state.failures, "lock_count": state.lock_count,
                "retry_after_seconds": state.retry_after(now)},
        request_id=request_id, reason="too_many_failures",
        details={"collection_id": key.collection_id}))


@dataclass(frozen=True)
class LockoutStatus:
    policy_name: str
    failures: int
    lock_count: int
    locked_until: datetime | None
    retry_after: int | None


def lockout_status(collection_id: str, subject_id: str, *, actor: Actor, uow: UnitOfWork,
                   clock: Clock) -> list[LockoutStatus]:
    """Every policy's lockout state for a subject (operators)."""
    now = clock.now()
    with uow:
        load_collection(uow, actor, collection_id)
        states = uow.lockouts.for_subject(collection_id, subject_id)
    return [LockoutStatus(s.key.policy_name, s.failures, s.lock_count, s.locked_until,
                          s.retry_after(now)) for s in states]


def unlock(collection_id: str, subject_id: str, policy_name: str | None, *, actor: Actor,
           uow: UnitOfWork, clock: Clock, request_id: str | None = None) -> int:
    """Clear a subject's lockout state (one policy or all), audited; 404 if none."""
    with uow:
        load_collection(uow, actor, collection_id)
        states = [s for s in uow.lockouts.for_subject(collection_id, subject_id)
                  if policy_name is None or s.key.policy_name == policy_name]
        if not states:
            raise NotFound("no lockout state for this subject",
                           details={"collection_id": collection_id})
        now = clock.now()
        for state in states:
            uow.lockouts.delete(state.key)
            uow.audit.append(AuditEvent(
                action=Action.LOCKOUT_UNLOCK, outcome="unlocked", actor=actor,
                resource=resource(collection_id, subject_id), subject_id=subject_id,
                policy_name=state.key.policy_name,
                scores={"failures": state.failures, "lock_count": state.lock_count,
                        "was_locked": state.retry_after(now) is not None},
                request_id=request_id, details={"collection_id": collection_id}))
        uow.commit()
    return len(states)
