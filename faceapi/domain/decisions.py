"""Decisions under a policy, human reviews of them, and the rules that make a
consequential decision impossible to finalise without reviewers.

Outcomes: `match`, `no_match`, `pending_review` (a review id is attached) and
`rejected` (no usable face, locked out, reviewers disagreed, review expired ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from faceapi.domain.errors import FaceApiError
from faceapi.domain.liveness import NOT_REQUIRED, LivenessCheck
from faceapi.domain.policies import Policy, ReviewMode


class Outcome(StrEnum):
    MATCH = "match"
    NO_MATCH = "no_match"
    PENDING_REVIEW = "pending_review"
    REJECTED = "rejected"


class Reason(StrEnum):
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    LOW_CONFIDENCE = "low_confidence"
    SMALL_FACE = "small_face"
    EXTREME_POSE = "extreme_pose"
    LOW_QUALITY = "low_quality"
    LOCKED = "locked"
    AT_OR_ABOVE_THRESHOLD = "similarity_at_or_above_threshold"
    BELOW_THRESHOLD = "similarity_below_threshold"
    REVIEW_REQUIRED = "consequential_review_required"
    # The only reason a requester sees while a review is pending (requester_view).
    REVIEW_PENDING = "review_required"
    IN_REVIEW_BAND = "similarity_in_review_band"
    REVIEWER_CONFIRMED = "reviewer_confirmed"
    REVIEWER_REJECTED = "reviewer_rejected"
    REVIEWERS_DISAGREED = "reviewers_disagreed"
    REVIEW_EXPIRED = "review_expired"
    SUBJECT_ERASED = "subject_erased"
    # The claimed subject's faces are all of another template version (a model change
    # whose `faceapi collections reindex` has not reached them): nothing was compared.
    TEMPLATE_NOT_MIGRATED = "template_not_migrated"


class DecisionKind(StrEnum):
    VERIFY = "verify"
    SEARCH = "search"
    COMPARE = "compare"


class ReviewStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"  # a reviewer (or both) rejected the proposed match
    DISAGREED = "disagreed"  # two reviewers differed: decision rejected and flagged
    EXPIRED = "expired"
    ERASED = "erased"  # the subject was erased while the review waited


class Vote(StrEnum):
    CONFIRM = "confirm"
    REJECT = "reject"


# Review errors (status codes in api/errors.py).
class ReviewNotFound(FaceApiError):
    code = "review_not_found"


class DecisionNotFound(FaceApiError):
    code = "decision_not_found"


class ReviewerIsRequester(FaceApiError):
    """The reviewer's key, or another key of the same owner, requested the decision."""

    code = "reviewer_is_requester"


class AlreadyVoted(FaceApiError):
    code = "already_voted"


class OwnerAlreadyVoted(FaceApiError):
    """Another key of the same owner has voted: two keys of one person are one reviewer."""

    code = "owner_already_voted"


class ReviewClosed(FaceApiError):
    code = "review_closed"


class UnknownCandidate(FaceApiError):
    code = "unknown_candidate"


@dataclass(frozen=True)
class Candidate:
    """A stored face compared with the probe; ids only, never the embedding."""

    face_id: str
    subject_id: str
    similarity: float


def pseudonymised(candidates: tuple[Candidate, ...],
                  subject_id: str | None) -> tuple[Candidate, ...]:
    """The candidates with an erased subject's (None: every subject's) face and subject
    ids blanked to "", their similarities kept."""
    return tuple(Candidate(face_id="", subject_id="", similarity=c.similarity)
                 if c.subject_id and (subject_id is None or c.subject_id == subject_id)
                 else c for c in candidates)


@dataclass(frozen=True)
class Proposal:
    """What the policy makes of a comparison, before anything is stored."""

    outcome: Outcome
    reasons: tuple[str, ...]

    @property
    def needs_review(self) -> bool:
        return self.outcome is Outcome.PENDING_REVIEW


def rejected_for(reasons: Sequence[str]) -> Proposal:
    """A probe that cannot be compared under the policy (no face, poor quality ...)."""
    return Proposal(Outcome.REJECTED, tuple(reasons))


def decide(policy: Policy, similarity: float | None) -> Proposal:
    """The outcome for the best similarity found (None: nothing to compare with).

    None is treated exactly like a score below the threshold, so a verify of an
    unknown subject is indistinguishable from a no_match. A policy whose human review
    is `always` sends every comparison to review, whatever the score, a search without
    a candidate included: an immediate no_match beside a pending review would tell the
    caller which side of the threshold the probe fell (reviewers reject it at once).
    """
    threshold = policy.min_similarity
    above = similarity is not None and similarity >= threshold
    base = Proposal(Outcome.MATCH, (Reason.AT_OR_ABOVE_THRESHOLD,)) if above else \
        Proposal(Outcome.NO_MATCH, (Reason.BELOW_THRESHOLD,))
    review = policy.human_review
    if review.mode is ReviewMode.ALWAYS:
        return Proposal(Outcome.PENDING_REVIEW, (*base.reasons, Reason.REVIEW_REQUIRED))
    if review.mode is ReviewMode.BAND and review.band is not None and similarity is not None:
        low, high = review.band
        if low <= similarity < high:
            return Proposal(Outcome.PENDING_REVIEW, (*base.reasons, Reason.IN_REVIEW_BAND))
    return base


@dataclass(frozen=True)
class Decision:
    """A decision as stored and as apps read it at GET /v1/decisions/{id}."""

    id: str
    kind: DecisionKind
    outcome: Outcome
    reasons: tuple[str, ...]
    policy_name: str
    policy_version: str
    threshold: float
    collection_id: str | None
    subject_id: str | None  # the claimed subject (verify)
    similarity: float | None  # best score; only shown to apps on a final match
    candidates: tuple[Candidate, ...] = ()
    matched_face_id: str | None = None
    review_id: str | None = None
    requester_key_id: str | None = None
    requester_role: str | None = None
    probe_sha256: str | None = None
    audit_event_id: str | None = None
    request_id: str | None = None
    created_at: datetime | None = None
    decided_at: datetime | None = None  # when it became final
    engine: str | None = None
    model_version: str | None = None
    # Whether liveness was attested, by which issuer, and the hash of the token's id
    # (never the token): part of every decision, `not_required` when the policy is not.
    liveness: LivenessCheck = NOT_REQUIRED

    @property
    def matched_subject_id(self) -> str | None:
        """The subject of the matched face: a verify's claimed subject, or the search
        candidate that matched (a reviewer's confirmed one). None until a match is final
        and after the subject's erasure (its candidate is blanked then)."""
        if self.outcome is not Outcome.MATCH or self.matched_face_id is None:
            return None
        found = next((c.subject_id for c in self.candidates
                      if c.face_id == self.matched_face_id), None)
        return found or None

    @property
    def final(self) -> bool:
        return self.outcome is not Outcome.PENDING_REVIEW

    def finalised(self, outcome: Outcome, reasons: Sequence[str], at: datetime,
                  matched_face_id: str | None = None) -> Decision:
        if outcome is Outcome.PENDING_REVIEW:
            raise ValueError("a decision is finalised with a final outcome")
        return replace(self, outcome=outcome, reasons=(*self.reasons, *reasons),
                       decided_at=at, matched_face_id=matched_face_id)


def requester_view(decision: Decision) -> Decision:
    """The decision as its requester (an app, an SDK caller) may see it. Until a review
    ends it says only that review is required: no reason that tells the side of the
    threshold, no similarity, no candidate, no matched face. Reviewers and auditors
    read the full decision."""
    if decision.final:
        return decision
    return replace(decision, reasons=(Reason.REVIEW_PENDING,), similarity=None,
                   candidates=(), matched_face_id=None)


@dataclass(frozen=True)
class ReviewVote:
    reviewer_key_id: str
    reviewer_role: str
    vote: Vote
    reason: str
    face_id: str | None
    at: datetime


@dataclass(frozen=True)
class Review:
    """A pending or closed human review of one decision."""

    id: str
    decision_id: str
    kind: DecisionKind
    policy_name: str
    policy_version: str
    collection_id: str | None
    subject_id: str | None
    requester_key_id: str | None
    required_reviewers: int
    status: ReviewStatus
    created_at: datetime
    expires_at: datetime
    retention_days: int
    candidates: tuple[Candidate, ...] = ()
    votes: tuple[ReviewVote, ...] = field(default_factory=tuple)
    evidence: tuple[str, ...] = ()  # blob names under reviews/<id>/
    closed_at: datetime | None = None
    evidence_expires_at: datetime | None = None
    evidence_purged: bool = False
    flagged: bool = False

    @property
    def pending(self) -> bool:
        return self.status is ReviewStatus.PENDING

    def expired_at(self, now: datetime) -> bool:
        return self.pending and now >= self.expires_at


@dataclass(frozen=True)
class Resolution:
    """A review's end: its status and the decision's final outcome."""

    status: ReviewStatus
    outcome: Outcome
    reasons: tuple[str, ...]
    matched_face_id: str | None = None
    flagged: bool = False


def new_review_deadline(policy: Policy, created_at: datetime) -> datetime:
    return created_at + timedelta(hours=policy.human_review.max_wait_hours)


# Key id -> the person or system owning the key (ApiKey.owner). The two-person rule
# and "the reviewer is not the requester" compare owners, not keys.
KeyOwners = Mapping[str, str]


def owner_of(key_id: str, owners: KeyOwners) -> str:
    """A key's owner; a key whose owner is not known counts as a person of its own."""
    return owners.get(key_id, f"key:{key_id}")


def check_vote(review: Review, reviewer_key_id: str | None, now: datetime,
               face_id: str | None, owners: KeyOwners | None = None) -> None:
    """Refuse a vote that must not count: closed review, the requester (same key or same
    owner), a repeat voter (same key, or another key of the same owner), a candidate
    that is not in the review."""
    if not review.pending or review.expired_at(now):
        state = "expired" if review.pending else review.status.value
        raise ReviewClosed(f"review {review.id} is {state}")
    owners = owners or {}
    # Without a key id nobody can be told apart from the requester: refuse.
    if reviewer_key_id is None or reviewer_key_id == review.requester_key_id:
        raise ReviewerIsRequester("a decision cannot be reviewed by the key that requested it")
    reviewer = owner_of(reviewer_key_id, owners)
    if review.requester_key_id is not None and \
            reviewer == owner_of(review.requester_key_id, owners):
        raise ReviewerIsRequester("a decision cannot be reviewed by the person or system "
                                  "that requested it (the keys have the same owner)")
    if any(v.reviewer_key_id == reviewer_key_id for v in review.votes):
        raise AlreadyVoted("this reviewer has already decided this review; "
                           "a second reviewer must be someone else")
    if any(owner_of(v.reviewer_key_id, owners) == reviewer for v in review.votes):
        raise OwnerAlreadyVoted("another key of this reviewer's owner has already decided "
                                "this review; a second reviewer must be another person")
    if face_id is not None and face_id not in {c.face_id for c in review.candidates}:
        raise UnknownCandidate(f"face {face_id[:64]} is not a candidate of this review")


def confirmed_face(review: Review, vote: ReviewVote) -> str | None:
    """The candidate a confirm vote names: the one given, or the top candidate."""
    if vote.vote is not Vote.CONFIRM:
        return None
    if vote.face_id is not None:
        return vote.face_id
    return review.candidates[0].face_id if review.candidates else None


def resolve(review: Review, owners: KeyOwners | None = None) -> Resolution | None:
    """The review's end once enough distinct reviewers (owners, not keys) have voted,
    else None.

    Every reviewer must agree (same vote and, for confirm, the same candidate); any
    disagreement rejects the decision and flags it for follow-up."""
    owners = owners or {}
    requester = (owner_of(review.requester_key_id, owners)
                 if review.requester_key_id is not None else None)
    votes = [v for v in review.votes if v.reviewer_key_id != review.requester_key_id
             and owner_of(v.reviewer_key_id, owners) != requester]
    distinct = {owner_of(v.reviewer_key_id, owners) for v in votes}
    if len(distinct) < review.required_reviewers:
        return None
    choices = {(v.vote, confirmed_face(review, v)) for v in votes}
    if len(choices) > 1:
        return Resolution(ReviewStatus.DISAGREED, Outcome.REJECTED,
                          (Reason.REVIEWERS_DISAGREED,), flagged=True)
    vote, face_id = choices.pop()
    # A search review without a candidate has nothing to confirm: it ends as no match.
    if vote is Vote.CONFIRM and (face_id is not None or review.kind is not DecisionKind.SEARCH):
        return Resolution(ReviewStatus.CONFIRMED, Outcome.MATCH, (Reason.REVIEWER_CONFIRMED,),
                          matched_face_id=face_id)
    return Resolution(ReviewStatus.REJECTED, Outcome.NO_MATCH, (Reason.REVIEWER_REJECTED,))


def expiry() -> Resolution:
    return Resolution(ReviewStatus.EXPIRED, Outcome.REJECTED, (Reason.REVIEW_EXPIRED,))


def erasure() -> Resolution:
    return Resolution(ReviewStatus.ERASED, Outcome.REJECTED, (Reason.SUBJECT_ERASED,))


# --- Repository ports (faceapi/adapters/store/decisions_repo.py; `uow.decisions`, `uow.reviews`)



