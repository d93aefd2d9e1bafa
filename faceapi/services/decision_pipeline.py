"""The decision pipeline, written once for every use case that decides under a policy
(verify, compare under a policy, search by image, search by face):

    finding -> decide under the policy -> one unit of work holding the decision, its
    audit event and (when pending) its review with the evidence -> commit,

and, if anything fails before the commit, the evidence written for the review is
discarded (nothing in the store points at it then).

A use case does its own pre-checks and engine work, sums them up in a `Finding` and a
`DecisionAudit`, and hands both to `take_decision`; work that must share the decision's
unit of work (verify's lockout count, search's matched faces) comes in as the `before`
and `after` hooks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from faceapi.domain.audit import Action, Actor, AuditEvent, DetailValue
from faceapi.domain.clock import Clock
from faceapi.domain.decisions import (
    Candidate,
    Decision,
    DecisionKind,
    Outcome,
    Proposal,
    decide,
    rejected_for,
)
from faceapi.domain.errors import BlobStoreUnavailable
from faceapi.domain.liveness import NOT_REQUIRED, LivenessCheck
from faceapi.domain.policies import Policy
from faceapi.services.audit_trail import record
from faceapi.services.ports import BlobStore, FaceEngine, UnitOfWork
from faceapi.services.review import discard_evidence, open_review

Scores = Mapping[str, float | int | bool | None]


@dataclass(frozen=True)
class Finding:
    """What the engine work found, before the policy decides."""

    kind: DecisionKind
    usable: bool  # a probe passed the policy's gates (and was compared)
    reasons: tuple[str, ...]  # why not, when not usable
    threshold: float  # the threshold decided at (a search's caller may raise it)
    similarity: float | None  # the best score
    probe_sha256: str
    candidates: tuple[Candidate, ...] = ()  # best first
    collection_id: str | None = None
    subject_id: str | None = None  # the claimed subject (verify)
    liveness: LivenessCheck = NOT_REQUIRED  # a refused attestation rejects the decision


@dataclass(frozen=True)
class DecisionAudit:
    """The parts of a decision's audit event that differ between use cases."""

    action: Action
    resource: str
    scores: Scores
    input_digests: tuple[str, ...]
    subject_id: str | None = None
    # After `decision_id`, before `review_id` in the event's details.
    details: Mapping[str, DetailValue] = field(default_factory=dict)


def propose(policy: Policy, finding: Finding) -> Proposal:
    """What the policy makes of the finding, at the threshold actually used."""
    if finding.liveness.refused:
        return rejected_for(finding.liveness.reasons)
    if not finding.usable:
        return rejected_for(list(finding.reasons))
    effective = replace(policy, min_similarity=finding.threshold) \
        if finding.threshold != policy.min_similarity else policy
    return decide(effective, finding.similarity)


def new_decision(finding: Finding, proposal: Proposal, *, policy: Policy, actor: Actor,
                 engine: FaceEngine, now: datetime, request_id: str | None) -> Decision:
    """The decision as it will be stored: final now, or pending with a new review id."""
    candidates = finding.candidates
    matched = candidates[0].face_id if proposal.outcome is Outcome.MATCH and candidates \
        else None
    return Decision(
        id=str(uuid.uuid4()), kind=finding.kind, outcome=proposal.outcome,
        reasons=proposal.reasons, policy_name=policy.name, policy_version=policy.version,
        threshold=finding.threshold, collection_id=finding.collection_id,
        subject_id=finding.subject_id, similarity=finding.similarity, candidates=candidates,
        matched_face_id=matched,
        review_id=str(uuid.uuid4()) if proposal.needs_review else None,
        requester_key_id=actor.key_id, requester_role=actor.role,
        probe_sha256=finding.probe_sha256, request_id=request_id, created_at=now,
        decided_at=None if proposal.needs_review else now,
        engine=engine.name, model_version=engine.model_version, liveness=finding.liveness)


def liveness_details(check: LivenessCheck) -> dict[str, DetailValue]:
    """The liveness part of a decision's audit event: status, issuer, the token id's
    hash (never the token)."""
    return {"liveness": check.status.value,
            **({"liveness_issuer": check.issuer} if check.issuer else {}),
            **({"liveness_jti_sha256": check.jti_sha256} if check.jti_sha256 else {})}


def decision_event(decision: Decision, audit: DecisionAudit, *, actor: Actor) -> AuditEvent:
    """The decision's audit event: outcome, policy, engine, scores and digests, never
    an image or a descriptor."""
    return AuditEvent(
        action=audit.action, outcome=decision.outcome.value, actor=actor,
        resource=audit.resource, subject_id=audit.subject_id,
        policy_name=decision.policy_name, policy_version=decision.policy_version,
        engine=decision.engine, model_version=decision.model_version,
        scores=dict(audit.scores), input_digests=audit.input_digests,
        request_id=decision.request_id, reason=",".join(decision.reasons)[:256],
        details={"decision_id": decision.id, **audit.details,
                 **({"review_id": decision.review_id} if decision.review_id else {}),
                 **liveness_details(decision.liveness)})


def record_decision(uow: UnitOfWork, blobs: BlobStore, decision: Decision,
                    event: AuditEvent, *, policy: Policy,
                    evidence: Callable[[], dict[str, bytes]], now: datetime,
                    actor: Actor) -> Decision:
    """Write a decision with its audit event inside the caller's unit of work, and open
    its review (with `evidence()`) when it waits for reviewers. Returns the decision
    carrying its audit event id; on failure the caller calls discard_evidence."""
    decision = replace(decision, audit_event_id=uow.audit.append(event).id)
    uow.decisions.add(decision)
    if decision.review_id is not None:
        open_review(uow, blobs, decision=decision, policy=policy, evidence=evidence(),
                    now=now, actor=actor, request_id=decision.request_id)
    return decision


def take_decision(finding: Finding, audit: DecisionAudit, *, policy: Policy, actor: Actor,
                  engine: FaceEngine, uow: UnitOfWork, blobs: BlobStore, clock: Clock,
                  request_id: str | None, evidence: Callable[[], dict[str, bytes]],
                  before: Callable[[UnitOfWork, Decision], None] | None = None,
                  after: Callable[[UnitOfWork, Decision], None] | None = None) -> Decision:
    """Decide under the policy and record the decision, its audit event and its review
    (when pending) in one unit of work; `before` and `after` run inside it, before and
    after the decision is written. Any failure discards the review's evidence."""
    now = clock.now()
    decision = new_decision(finding, propose(policy, finding), policy=policy, actor=actor,
                            engine=engine, now=now, request_id=request_id)
    try:
        with uow:
            if before is not None:
                before(uow, decision)
            decision = record_decision(uow, blobs, decision,
                                       decision_event(decision, audit, actor=actor),
                                       policy=policy, evidence=evidence, now=now,
                                       actor=actor)
            if after is not None:
                after(uow, decision)
            uow.commit()
    except BaseException as exc:
        discard_evidence(blobs, decision.review_id)
        if isinstance(exc, BlobStoreUnavailable):
            # The review's evidence could not be written (disk full, read-only): the
            # decision was refused whole, and the refusal is on record. Its details name
            # no decision or review: neither exists.
            record(replace(decision_event(decision, audit, actor=actor), outcome="refused",
                           reason=exc.code, details=dict(audit.details)), uow=uow)
        raise
    return decision
