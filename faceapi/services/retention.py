"""Data lifecycle: what `faceapi retention run` (cron, the CronJob) deletes, and what a
subject's erasure pseudonymises.

- A subject whose consent in force has lapsed (`expires_at` passed) is erased, one
  subject per transaction, through the same erasure and erasers as a manual erasure
  (services/erase.py `erase_lapsed_subject`): faces, descriptors, crops, consents,
  review evidence, lockout state, the engine's copy, ids in decisions and reviews.
  Each erasure is its own `subject.erase` event (reason `consent_expired`), so the
  trail says for every subject when and why it went, as for a manual erasure.
- Decision rows older than their policy's `decision_retention_days` are deleted.
- Lockout states quiet for longer than their policy's lockout window are deleted (a
  next failure would start afresh anyway).
- One `retention.run` event summarises the run (counts only).

A decision or review row holds no image or descriptor, but its subject id (and, for a
search, the candidates' subject and face ids) ties a person to a time, a requester and
an outcome. Erasure removes those ids in the erasure's own transaction
(`DecisionPseudonymiser`, `ReviewPseudonymiser`: `SubjectEraser`s), so the rows keep
only what aggregate reporting needs: outcome, scores, policy, engine, times. The audit
log keeps its own events unchanged (it is append-only and hash-chained)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.errors import FaceApiError
from faceapi.domain.policies import DEFAULT_DECISION_RETENTION_DAYS, PolicySet
from faceapi.services.erase import erase_lapsed_subject
from faceapi.services.ports import ErasedData, SubjectEraser, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


class DecisionPseudonymiser:
    """A `faceapi.services.erase.SubjectEraser` that removes the subject's ids from
    decision rows; counted as `decisions_pseudonymised` in the erasure's audit event."""

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        changed = uow.decisions.pseudonymise_subject(collection_id, subject_id)
        return ErasedData(counts={"decisions_pseudonymised": changed})


class ReviewPseudonymiser:
    """A `SubjectEraser` that removes the subject's ids from review rows (the review's
    subject, the candidates naming it, votes' picked faces among them); counted as
    `reviews_pseudonymised`. Registered after `ReviewEvidenceEraser`, which finds the
    subject's reviews by those ids to purge their evidence first."""

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        changed = uow.reviews.pseudonymise_subject(collection_id, subject_id)
        return ErasedData(counts={"reviews_pseudonymised": changed})


# Lapsed consents erased per read; the run reads again until none is left.
CONSENT_BATCH = 100


@dataclass(frozen=True)
class RetentionReport:
    decisions_deleted: dict[str, int] = field(default_factory=dict)  # by policy name
    audit_event_id: str = ""
    # Subjects erased because their consent lapsed: (collection id, subject id).
    subjects_erased: tuple[tuple[str, str], ...] = ()
    # Lapsed subjects whose erasure failed (the engine's copy could not be deleted,
    # ...): left for the next run, which tries them again.
    erasures_failed: int = 0
    # Lockout states quiet for longer than their policy's window.
    lockouts_cleared: int = 0

    @property
    def total_decisions_deleted(self) -> int:
        return sum(self.decisions_deleted.values())


def run_retention(*, uow_factory: UnitOfWorkFactory, policies: PolicySet, clock: Clock,
                  actor: Actor, erasers: tuple[SubjectEraser, ...] = (),
                  on_erased: Callable[[str], None] | None = None) -> RetentionReport:
    """Erase the subjects whose consent has lapsed (each in its own audited
    transaction), then delete decision rows older than their policy's
    `decision_retention_days` (a policy no longer in force: the default) and quiet
    lockout states, audited as one `retention.run` event with the counts."""
    now = clock.now()
    erased, failed = _erase_lapsed(uow_factory, now=now, actor=actor, erasers=erasers,
                                   on_erased=on_erased)
    uow = uow_factory()
    with uow:
        deleted: dict[str, int] = {}
        for name in sorted(uow.decisions.policy_names()):
            policy = policies.get(name)
            days = (policy.decision_retention_days if policy is not None
                    else DEFAULT_DECISION_RETENTION_DAYS)
            count = uow.decisions.delete_before(name, now - timedelta(days=days))
            if count:
                deleted[name] = count
        cleared = _clear_quiet_lockouts(uow, policies, now)
        # Per policy as two parallel lists (an audit event holds at most 16 of each).
        names = tuple(deleted)[:16]
        event = uow.audit.append(AuditEvent(
            action=Action.RETENTION_RUN, outcome="completed", actor=actor,
            resource="retention",
            scores={"decisions_deleted": sum(deleted.values()),
                    "subjects_erased": len(erased), "erasures_failed": failed,
                    "lockouts_cleared": cleared},
            details={"policies": names,
                     "policy_decisions_deleted": tuple(deleted[n] for n in names)}))
        uow.commit()
    return RetentionReport(decisions_deleted=deleted, audit_event_id=event.id,
                           subjects_erased=tuple(erased), erasures_failed=failed,
                           lockouts_cleared=cleared)


# A lockout state of a policy no longer in force (or without a lockout rule) is cleared
# after this long without a failure.
DEFAULT_LOCKOUT_QUIET = timedelta(days=1)


def _clear_quiet_lockouts(uow: UnitOfWork, policies: PolicySet, now: datetime) -> int:
    """Delete lockout states (a claimed subject id, failure counts and times) quiet for
    longer than their policy's window: the next failure would start them afresh anyway
    (domain/lockout.py `after_failure`), so clearing them changes no decision. Claims of
    ids never enrolled would otherwise be kept for ever."""
    cleared = 0
    for name in sorted(uow.lockouts.policy_names()):
        policy = policies.get(name)
        quiet = (timedelta(minutes=policy.lockout.window_minutes)
                 if policy is not None and policy.lockout is not None
                 else DEFAULT_LOCKOUT_QUIET)
        cleared += uow.lockouts.delete_quiet(name, now - quiet)
    return cleared


def _erase_lapsed(uow_factory: UnitOfWorkFactory, *, now: datetime, actor: Actor,
                  erasers: tuple[SubjectEraser, ...],
                  on_erased: Callable[[str], None] | None
                  ) -> tuple[list[tuple[str, str]], int]:
    """Erase every subject whose consent in force lapsed at or before `now`."""
    erased: list[tuple[str, str]] = []
    failed = 0
    # Subjects tried in this run: a failed or skipped one is not read again, so the
    # loop ends whatever happens to each erasure.
    seen: set[tuple[str, str]] = set()
    while True:
        with uow_factory() as uow:
            listed = uow.consents.lapsed(now, CONSENT_BATCH + len(seen))
        due = [s for s in listed if s not in seen][:CONSENT_BATCH]
        if not due:
            return erased, failed
        for collection_id, subject_id in due:
            seen.add((collection_id, subject_id))
            try:
                report = erase_lapsed_subject(collection_id, subject_id, now=now,
                                              actor=actor, uow=uow_factory(),
                                              erasers=erasers, on_erased=on_erased)
            except FaceApiError as exc:
                # One subject's failure (a remote engine down) must not stop the rest;
                # its consent is still lapsed, so the next run tries it again.
                log.warning("consent_erasure_failed", error=exc.code)
                failed += 1
                continue
            if report is not None:  # None: renewed or erased meanwhile
                erased.append((collection_id, subject_id))
