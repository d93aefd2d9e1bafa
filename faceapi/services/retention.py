"""Data lifecycle for decision rows: pseudonymised when their subject is erased, deleted
after their policy's `decision_retention_days` (`faceapi retention run`, from cron).

A decision row holds no image or descriptor, but its subject id (and, for a search, the
candidates' subject and face ids) ties a person to a time, a requester and an outcome.
Erasure removes those ids in the erasure's own transaction (`DecisionPseudonymiser`, a
`SubjectEraser`), so the row keeps only what aggregate reporting needs: outcome,
scores, policy, engine, times. The audit log keeps its own events unchanged (it is
append-only and hash-chained)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.policies import DEFAULT_DECISION_RETENTION_DAYS, PolicySet
from faceapi.services.ports import ErasedData, UnitOfWork


class DecisionPseudonymiser:
    """A `faceapi.services.erase.SubjectEraser` that removes the subject's ids from
    decision rows; counted as `decisions_pseudonymised` in the erasure's audit event."""

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        changed = uow.decisions.pseudonymise_subject(collection_id, subject_id)
        return ErasedData(counts={"decisions_pseudonymised": changed})


@dataclass(frozen=True)
class RetentionReport:
    decisions_deleted: dict[str, int] = field(default_factory=dict)  # by policy name
    audit_event_id: str = ""

    @property
    def total_decisions_deleted(self) -> int:
        return sum(self.decisions_deleted.values())


def run_retention(*, uow: UnitOfWork, policies: PolicySet, clock: Clock,
                  actor: Actor) -> RetentionReport:
    """Delete decision rows older than their policy's `decision_retention_days` (a
    policy no longer in force: the default), audited as one `retention.run` event with
    the counts, in one transaction."""
    now = clock.now()
    with uow:
        deleted: dict[str, int] = {}
        for name in sorted(uow.decisions.policy_names()):
            policy = policies.get(name)
            days = (policy.decision_retention_days if policy is not None
                    else DEFAULT_DECISION_RETENTION_DAYS)
            count = uow.decisions.delete_before(name, now - timedelta(days=days))
            if count:
                deleted[name] = count
        # Per policy as two parallel lists (an audit event holds at most 16 of each).
        names = tuple(deleted)[:16]
        event = uow.audit.append(AuditEvent(
            action=Action.RETENTION_RUN, outcome="completed", actor=actor,
            resource="retention", scores={"decisions_deleted": sum(deleted.values())},
            details={"policies": names,
                     "policy_decisions_deleted": tuple(deleted[n] for n in names)}))
        uow.commit()
    return RetentionReport(decisions_deleted=deleted, audit_event_id=event.id)
