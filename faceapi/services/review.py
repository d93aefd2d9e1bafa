"""Use case: human review of decisions, and the decisions apps read back.

A pending decision gets a review holding its context (ids and scores) and, in the blob
store under `reviews/<review id>/`, the evidence a reviewer looks at: the probe image
and the probe face crop (re-encoded, so no metadata of the upload survives). Evidence
is kept only until the review ends plus the policy's `retention_days`.

Erasure hook for the collections work: `ReviewEvidenceEraser(blobs, clock)` is a
`faceapi.services.erase.SubjectEraser`; it deletes a subject's review evidence (closing
its pending reviews as rejected) and its lockout state inside the erasure's unit of work.
`erase_subject_evidence(uow, blobs, collection_id, subject_id, now)` does the same.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import structlog
from PIL import Image

from faceapi.domain.access import (
    ADMIN,
    AUDITOR,
    can_read,
    can_read_decision,
    collection_filter,
    out_of_scope_like,
    policy_filter,
)
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.clock import Clock
from faceapi.domain.collections import consent_expired_error
from faceapi.domain.decisions import (
    Decision,
    DecisionNotFound,
    KeyOwners,
    Resolution,
    Review,
    ReviewNotFound,
    ReviewStatus,
    ReviewVote,
    Vote,
    check_vote,
    erasure,
    expiry,
    new_review_deadline,
    resolve,
)
from faceapi.domain.faces import FaceDetail
from faceapi.domain.images import DecodedImage
from faceapi.domain.policies import Policy
from faceapi.services.face_crops import face_region
from faceapi.services.ports import BlobStore, ErasedData, UnitOfWork
from faceapi.services.webhooks import enqueue_final

log = structlog.get_logger(__name__)

SWEEP_BATCH = 100
PROBE = "probe.jpg"
PROBE_FACE = "probe_face.jpg"
REVIEWS_PREFIX = "reviews"


def evidence_prefix(review_id: str) -> str:
    return f"{REVIEWS_PREFIX}/{review_id}"


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def evidence_images(image: DecodedImage, face: FaceDetail | None,
                    prefix: str = "probe") -> dict[str, bytes]:
    """The probe (re-encoded: no EXIF, no upload metadata) and its face crop."""
    out = {f"{prefix}.jpg": _jpeg(image.pixels)}
    region = face_region(image.pixels, face.bounding_box) if face is not None else None
    if region is not None:
        out[f"{prefix}_face.jpg"] = _jpeg(region)
    return out


def open_review(uow: UnitOfWork, blobs: BlobStore, *, decision: Decision, policy: Policy,
                evidence: dict[str, bytes], now: datetime, actor: Actor,
                request_id: str | None) -> Review:
    """Create the review of a pending decision inside the caller's unit of work.

    Evidence is written before the caller commits; if the commit does not happen the
    caller calls discard_evidence (nothing in the store points at it then)."""
    assert decision.review_id is not None
    review = Review(
        id=decision.review_id, decision_id=decision.id, kind=decision.kind,
        policy_name=policy.name, policy_version=policy.version,
        collection_id=decision.collection_id, subject_id=decision.subject_id,
        requester_key_id=decision.requester_key_id,
        required_reviewers=policy.human_review.reviewers, status=ReviewStatus.PENDING,
        created_at=now, expires_at=new_review_deadline(policy, now),
        retention_days=policy.retention_days, candidates=decision.candidates,
        evidence=tuple(sorted(evidence)))
    for name, data in evidence.items():
        blobs.put(f"{evidence_prefix(review.id)}/{name}", data)
    uow.reviews.add(review)
    uow.audit.append(AuditEvent(
        action=Action.REVIEW_CREATE, outcome="pending", actor=actor,
        resource=f"reviews/{review.id}", subject_id=decision.subject_id,
        policy_name=policy.name, policy_version=policy.version,
        scores={"required_reviewers": review.required_reviewers,
                "candidate_count": len(review.candidates)},
        input_digests=(decision.probe_sha256,) if decision.probe_sha256 else (),
        request_id=request_id,
        details={"decision_id": decision.id, "review_id": review.id,
                 "collection_id": decision.collection_id}))
    return review


def discard_evidence(blobs: BlobStore, review_id: str | None) -> None:
    if review_id is not None:
        blobs.delete_prefix(evidence_prefix(review_id))


def _discarder(blobs: BlobStore, review_id: str) -> Callable[[], None]:
    return lambda: discard_evidence(blobs, review_id)


def _close(uow: UnitOfWork, review: Review, resolution: Resolution, now: datetime, *,
           actor: Actor, action: Action, request_id: str | None,
           reason: str | None = None) -> tuple[Review, Decision]:
    """End a review and finalise its decision, with the audit event, in `uow`."""
    closed = replace(review, status=resolution.status, closed_at=now, flagged=resolution.flagged,
                     evidence_expires_at=now + timedelta(days=review.retention_days))
    uow.reviews.close(closed)
    decision = uow.decisions.get(review.decision_id)
    if decision is None:
        raise DecisionNotFound(f"decision {review.decision_id} not found")
    final = decision.finalised(resolution.outcome, resolution.reasons, now,
                               resolution.matched_face_id)
    uow.decisions.update(final)
    # The requester's callback, in this transaction: final and queued commit together.
    enqueue_final(uow, final, now)
    uow.audit.append(AuditEvent(
        action=action, outcome=resolution.status.value, actor=actor,
        resource=f"reviews/{review.id}", subject_id=review.subject_id,
        policy_name=review.policy_name, policy_version=review.policy_version,
        scores={"votes": len(review.votes), "flagged": resolution.flagged},
        request_id=request_id, reason=reason,
        details={"decision_id": decision.id, "decision_outcome": final.outcome.value,
                 "review_id": review.id, "collection_id": review.collection_id,
                 **({"matched_face_id": final.matched_face_id}
                    if final.matched_face_id else {})}))
    return closed, final


# --- sweeping: expiry of waiting reviews, purge of evidence past retention -------------

def sweep(*, uow: UnitOfWork, blobs: BlobStore, clock: Clock) -> tuple[int, int]:
    """Expire reviews past their deadline (rejected) and purge evidence past retention.
    Runs on every review and decision read, so no scheduler is needed for correctness."""
    now = clock.now()
    system = Actor.system("review-sweep")
    expired = 0
    with uow:
        due = uow.reviews.due_for_expiry(now, SWEEP_BATCH)
        for stale in due:
            review = uow.reviews.get(stale.id, for_update=True)
            if review is None or not review.expired_at(now):
                continue
            _close(uow, review, expiry(), now, actor=system, action=Action.REVIEW_EXPIRE,
                   request_id=None, reason="review_expired")
            expired += 1
        if expired:
            uow.commit()
    return expired, purge_evidence(uow=uow, blobs=blobs, now=now)


def purge_evidence(*, uow: UnitOfWork, blobs: BlobStore, now: datetime) -> int:
    """Delete evidence whose retention ended; the rows are marked in one audited commit."""
    with uow:
        due = uow.reviews.evidence_due(now, SWEEP_BATCH)
        if not due:
            return 0
        for review in due:
            uow.reviews.mark_evidence_purged(review.id)
        uow.audit.append(AuditEvent(
            action=Action.REVIEW_EVIDENCE_PURGE, outcome="purged",
            actor=Actor.system("review-sweep"), resource="reviews",
            scores={"review_count": len(due)},
            details={"review_ids": [r.id for r in due[:16]]}))
        uow.commit()
    for review in due:
        # After the commit: a failure leaves files nothing points at, never rows
        # that point at deleted files.
        blobs.delete_prefix(evidence_prefix(review.id))
    return len(due)


# --- reading ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ReviewQuery:
    status: ReviewStatus | None = ReviewStatus.PENDING
    policy_name: str | None = None
    older_than_minutes: float | None = None
    limit: int = 50
    after: str | None = None


@dataclass(frozen=True)
class ReviewView:
    """A review as its reader may see it: other reviewers' votes are hidden from a
    reviewer who has not voted yet on a pending review (an independent second look)."""

    review: Review
    decision: Decision | None
    votes_visible: bool


def _visible(review: Review, actor: Actor) -> bool:
    if not review.pending or actor.role in (AUDITOR, ADMIN):
        return True
    return any(v.reviewer_key_id == actor.key_id for v in review.votes)


def _missing_review(review_id: str) -> ReviewNotFound:
    return ReviewNotFound(f"review {review_id[:64]} not found",
                          details={"review_id": review_id[:64]})


def _require_review_access(actor: Actor, review: Review) -> None:
    # A review carries its request's scope: its collection (None for a compare, which
    # only collection-unscoped keys see) and its policy. Out of scope answers exactly
    # like missing (no probing for review ids) and is audited as authz.deny.
    if not can_read(actor, review.collection_id, review.policy_name):
        raise out_of_scope_like(_missing_review(review.id))


def list_reviews(query: ReviewQuery, *, actor: Actor, uow: UnitOfWork, blobs: BlobStore,
                 clock: Clock) -> list[Review]:
    """Reviews oldest first, filtered by status, policy and age, within the key's scope."""
    sweep(uow=uow, blobs=blobs, clock=clock)
    now = clock.now()
    before = (now - timedelta(minutes=query.older_than_minutes)
              if query.older_than_minutes is not None else None)
    scope = collection_filter(actor)
    policies = policy_filter(actor)
    with uow:
        return uow.reviews.page(status=query.status, policy_name=query.policy_name,
                                created_before=before,
                                collection_ids=sorted(scope) if scope is not None else None,
                                policy_names=sorted(policies) if policies is not None else None,
                                limit=query.limit, after=query.after)


def count_waiting_reviews(*, actor: Actor, uow: UnitOfWork, clock: Clock) -> int:
    """How many reviews wait for a decision within the key's scope: one count query,
    without the sweep's writes (overdue ones are simply not counted)."""
    scope = collection_filter(actor)
    policies = policy_filter(actor)
    with uow:
        return uow.reviews.count_waiting(clock.now(),
                                         sorted(scope) if scope is not None else None,
                                         sorted(policies) if policies is not None else None)


def get_review(review_id: str, *, actor: Actor, uow: UnitOfWork, blobs: BlobStore,
               clock: Clock) -> ReviewView:
    sweep(uow=uow, blobs=blobs, clock=clock)
    with uow:
        review = uow.reviews.get(review_id)
        if review is None:
            raise _missing_review(review_id)
        _require_review_access(actor, review)
        return ReviewView(review, uow.decisions.get(review.decision_id),
                          _visible(review, actor))


def get_evidence(review_id: str, name: str, *, actor: Actor, uow: UnitOfWork,
                 blobs: BlobStore, clock: Clock, request_id: str | None = None) -> bytes:
    """One evidence image of a review (reviewers only, while it is retained). Every
    look at biometric evidence is an audit event: who saw which review's image."""
    view = get_review(review_id, actor=actor, uow=uow, blobs=blobs, clock=clock)
    review = view.review
    if name not in review.evidence or review.evidence_purged:
        raise ReviewNotFound(f"no evidence {name[:64]} for review {review_id[:64]}")
    data = blobs.get(f"{evidence_prefix(review_id)}/{name}")
    if data is None:
        raise ReviewNotFound(f"no evidence {name[:64]} for review {review_id[:64]}")
    with uow:
        uow.audit.append(AuditEvent(
            action=Action.REVIEW_EVIDENCE_VIEW, outcome="served", actor=actor,
            resource=f"reviews/{review.id}", subject_id=review.subject_id,
            policy_name=review.policy_name, policy_version=review.policy_version,
            request_id=request_id, details={"evidence": name, "review_id": review.id,
                                            "collection_id": review.collection_id}))
        uow.commit()
    return data


def get_decision(decision_id: str, *, actor: Actor, uow: UnitOfWork, blobs: BlobStore,
                 clock: Clock) -> Decision:
    """A decision for its requester (apps see their own only), reviewers and auditors."""
    sweep(uow=uow, blobs=blobs, clock=clock)
    with uow:
        decision = uow.decisions.get(decision_id)
    missing = DecisionNotFound(f"decision {decision_id[:64]} not found",
                               details={"decision_id": decision_id[:64]})
    if decision is None:
        raise missing
    if not can_read_decision(actor, decision.requester_key_id, decision.collection_id,
                             decision.policy_name):
        raise out_of_scope_like(missing)
    return decision


# --- deciding --------------------------------------------------------------------------

@dataclass(frozen=True)
class VoteRequest:
    review_id: str
    vote: Vote
    reason: str
    face_id: str | None = None


def key_owners(uow: UnitOfWork, review: Review, reviewer_key_id: str | None) -> KeyOwners:
    """The owners of the keys a vote is judged against: the requester's, the earlier
    voters' and the reviewer's. Keys are revoked, never deleted, and an owner never
    changes, so this answers the same for the whole life of a review."""
    ids = {review.requester_key_id, reviewer_key_id, *(v.reviewer_key_id for v in review.votes)}
    owners: dict[str, str] = {}
    for key_id in (i for i in ids if i is not None):
        key = uow.api_keys.get(key_id)
        if key is not None:
            owners[key_id] = key.owner
    return owners


def decide_review(req: VoteRequest, *, actor: Actor, uow: UnitOfWork, blobs: BlobStore,
                  clock: Clock, request_id: str | None = None) -> ReviewView:
    """Record one reviewer's vote; close the review when enough distinct reviewers agree
    (or disagree). Reviewers are counted by owner: the reviewer can never be the key, or
    the owner of the key, that requested the decision, and two keys of one owner are one
    reviewer."""
    sweep(uow=uow, blobs=blobs, clock=clock)
    now = clock.now()
    with uow:
        review = uow.reviews.get(req.review_id, for_update=True)
        if review is None:
            raise _missing_review(req.review_id)
        _require_review_access(actor, review)
        owners = key_owners(uow, review, actor.key_id)
        check_vote(review, actor.key_id, now, req.face_id, owners)
        assert actor.key_id is not None  # check_vote refuses a vote without a key id
        if req.vote is Vote.CONFIRM:
            _refuse_lapsed_subject(uow, review, req.face_id, now)
        vote = ReviewVote(reviewer_key_id=actor.key_id, reviewer_role=actor.role,
                          vote=req.vote, reason=req.reason, face_id=req.face_id, at=now)
        uow.reviews.add_vote(review.id, vote)
        review = replace(review, votes=(*review.votes, vote))
        uow.audit.append(AuditEvent(
            action=Action.REVIEW_DECISION, outcome=req.vote.value, actor=actor,
            resource=f"reviews/{review.id}", subject_id=review.subject_id,
            policy_name=review.policy_name, policy_version=review.policy_version,
            scores={"votes": len(review.votes), "required": review.required_reviewers},
            request_id=request_id, reason=req.reason,
            details={"decision_id": review.decision_id, "review_id": review.id,
                     "collection_id": review.collection_id,
                     **({"face_id": req.face_id} if req.face_id else {})}))
        resolution = resolve(review, owners)
        decision: Decision | None
        if resolution is not None:
            review, decision = _close(uow, review, resolution, now, actor=actor,
                                      action=Action.REVIEW_DECISION, request_id=request_id,
                                      reason="review_closed")
        else:
            decision = uow.decisions.get(review.decision_id)
        uow.commit()
    if resolution is not None and review.retention_days == 0:
        purge_evidence(uow=uow, blobs=blobs, now=now)
    return ReviewView(review, decision, True)


def _refuse_lapsed_subject(uow: UnitOfWork, review: Review, face_id: str | None,
                           now: datetime) -> None:
    """A confirmation names a subject: one whose consent has lapsed since the review
    opened is used by nobody, reviewers included (422 `consent_required`). The review
    stays pending until it expires or retention erases the subject (closing it)."""
    if review.collection_id is None:
        return
    if review.subject_id is not None:  # a verify: the claimed subject
        named = [review.subject_id]
    else:  # a search: the picked candidate, else the top one
        picked = [c for c in review.candidates if face_id is None or c.face_id == face_id]
        named = [picked[0].subject_id] if picked and picked[0].subject_id else []
    lapsed = uow.consents.lapsed_among(review.collection_id, named, now)
    if lapsed:
        raise consent_expired_error(review.collection_id, sorted(lapsed)[0])


# --- erasure ---------------------------------------------------------------------------

def erase_subject_evidence(uow: UnitOfWork, blobs: BlobStore, collection_id: str,
                           subject_id: str | None, now: datetime
                           ) -> tuple[dict[str, int], list[Callable[[], None]]]:
    """Inside an erasure's unit of work: close the subject's pending reviews as rejected,
    mark their evidence purged, forget its lockout state. Returns counts and the blob
    deletions to run after commit. `subject_id` None: every subject of the collection."""
    system = Actor.system("erasure")
    touched: list[Review] = []
    for found in uow.reviews.with_evidence_in(collection_id):
        involved = subject_id is None or found.subject_id == subject_id or any(
            c.subject_id == subject_id for c in found.candidates)
        if not involved:
            continue
        review = found
        if found.pending:
            locked = uow.reviews.get(found.id, for_update=True) or found
            review, _ = _close(uow, locked, erasure(), now, actor=system,
                               action=Action.REVIEW_EXPIRE, request_id=None,
                               reason="subject_erased")
        uow.reviews.mark_evidence_purged(review.id)
        touched.append(review)
    lockouts = uow.lockouts.delete_for_subject(collection_id, subject_id)
    cleanups: list[Callable[[], None]] = [_discarder(blobs, r.id) for r in touched]
    return {"review_evidence": len(touched), "lockout": lockouts}, cleanups


class ReviewEvidenceEraser:
    """A `faceapi.services.erase.SubjectEraser` for review evidence and lockout state."""

    def __init__(self, blobs: BlobStore, clock: Clock) -> None:
        self._blobs = blobs
        self._clock = clock

    def __call__(self, uow: UnitOfWork, collection_id: str,
                 subject_id: str | None) -> ErasedData:
        counts, cleanups = erase_subject_evidence(uow, self._blobs, collection_id,
                                                  subject_id, self._clock.now())
        return ErasedData(counts=counts, after_commit=tuple(cleanups))


def new_id() -> str:
    return str(uuid.uuid4())
