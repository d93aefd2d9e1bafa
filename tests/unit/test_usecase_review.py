"""Use case: human review of consequential decisions (services/review.py), on fakes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from faceapi.domain.access import ApiKey
from faceapi.domain.decisions import Decision, Outcome, ReviewStatus, Vote
from faceapi.domain.errors import FaceApiError
from faceapi.services.review import VoteRequest, decide_review, sweep
from tests.unit.test_usecase_verify import enrolled_world, run
from tests.unit.usecase_world import APP, REVIEWER, REVIEWER_2, World


def with_keys(w: World, owners: dict[str, str]) -> None:
    for key_id, owner in owners.items():
        w.store.state.api_keys[key_id] = ApiKey(
            id=key_id, name=key_id, role="reviewer", key_hash="0" * 64,
            created_at=datetime(2026, 1, 1, tzinfo=UTC), owner=owner)


def pending(owners: dict[str, str] | None = None) -> tuple[World, Decision]:
    w = enrolled_world()
    with_keys(w, owners or {"app1": "app-team", "rev1": "alice", "rev2": "bob"})
    decision = run(w, w.other_photo(1, "selfie"), policy="identity_check")
    assert decision.outcome is Outcome.PENDING_REVIEW
    return w, decision


def vote(w: World, decision: Decision, vote: Vote, actor: object = REVIEWER) -> None:
    face_id = decision.candidates[0].face_id if vote is Vote.CONFIRM else None
    decide_review(VoteRequest(review_id=decision.review_id or "", vote=vote, reason="checked",
                              face_id=face_id),
                  actor=actor, uow=w.store.uow(), blobs=w.blobs,  # type: ignore[arg-type]
                  clock=w.clock)


def test_a_reviewers_confirmation_makes_the_pending_verify_a_final_match() -> None:
    w, decision = pending()
    vote(w, decision, Vote.CONFIRM)
    stored = w.store.state.decisions[decision.id]
    assert stored.outcome is Outcome.MATCH
    assert stored.decided_at is not None
    assert w.store.state.reviews[decision.review_id or ""].status is ReviewStatus.CONFIRMED
    assert "review.decision" in w.store.actions


def test_a_reviewers_rejection_makes_it_a_final_no_match() -> None:
    w, decision = pending()
    vote(w, decision, Vote.REJECT)
    assert w.store.state.decisions[decision.id].outcome is Outcome.NO_MATCH


def test_the_requesting_key_cannot_review_its_own_decision() -> None:
    w, decision = pending()
    with pytest.raises(FaceApiError) as refused:
        vote(w, decision, Vote.CONFIRM, actor=type(REVIEWER)(role="reviewer", key_id="app1"))
    assert refused.value.code == "reviewer_is_requester"
    assert w.store.state.decisions[decision.id].outcome is Outcome.PENDING_REVIEW


def test_a_reviewer_key_of_the_requesters_owner_cannot_review_either() -> None:
    w, decision = pending({"app1": "alice", "rev1": "alice", "rev2": "bob"})
    with pytest.raises(FaceApiError):
        vote(w, decision, Vote.CONFIRM)
    vote(w, decision, Vote.CONFIRM, actor=REVIEWER_2)
    assert w.store.state.decisions[decision.id].outcome is Outcome.MATCH


def test_a_closed_review_takes_no_more_votes() -> None:
    w, decision = pending()
    vote(w, decision, Vote.CONFIRM)
    with pytest.raises(FaceApiError) as refused:
        vote(w, decision, Vote.REJECT, actor=REVIEWER_2)
    assert refused.value.code == "review_closed"


def test_a_review_past_its_deadline_expires_and_the_decision_is_rejected() -> None:
    w, decision = pending()
    w.clock.advance(hours=73)
    sweep(uow=w.store.uow(), blobs=w.blobs, clock=w.clock)
    assert w.store.state.reviews[decision.review_id or ""].status is ReviewStatus.EXPIRED
    assert w.store.state.decisions[decision.id].outcome is Outcome.REJECTED
    assert "review.expire" in w.store.actions


def test_the_app_never_sees_a_final_answer_before_the_review() -> None:
    w, decision = pending()
    assert decision.similarity is not None  # scored ...
    assert w.store.state.decisions[decision.id].decided_at is None  # ... but not final
    assert APP.key_id == decision.requester_key_id
