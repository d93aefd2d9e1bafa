"""decide() and the review rules: a consequential decision is never final without
the reviewers its policy asks for."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faceapi.adapters.policy_files import load_policies
from faceapi.domain.decisions import (
    AlreadyVoted,
    Candidate,
    Decision,
    DecisionKind,
    Outcome,
    OwnerAlreadyVoted,
    Reason,
    Review,
    ReviewClosed,
    ReviewerIsRequester,
    ReviewStatus,
    ReviewVote,
    UnknownCandidate,
    Vote,
    check_vote,
    decide,
    requester_view,
    resolve,
)
from faceapi.domain.policies import PolicySet

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies(Path(__file__).resolve().parents[2] / "policies")


def review(required: int = 1, candidates: tuple[Candidate, ...] = ()) -> Review:
    return Review(id="r1", decision_id="d1", kind=DecisionKind.VERIFY, policy_name="p",
                  policy_version="0" * 64, collection_id="c", subject_id="s",
                  requester_key_id="app1", required_reviewers=required,
                  status=ReviewStatus.PENDING, created_at=NOW,
                  expires_at=NOW + timedelta(hours=1), retention_days=1,
                  candidates=candidates)


def vote(who: str, choice: Vote, face_id: str | None = None) -> ReviewVote:
    return ReviewVote(reviewer_key_id=who, reviewer_role="reviewer", vote=choice,
                      reason="looked", face_id=face_id, at=NOW)


def test_login_matches_at_the_threshold_and_not_below(policies: PolicySet) -> None:
    login = policies["login"]
    assert decide(login, login.min_similarity).outcome is Outcome.MATCH
    assert decide(login, login.min_similarity - 0.01).outcome is Outcome.NO_MATCH


def test_an_unknown_subject_is_decided_exactly_like_a_low_score(policies: PolicySet) -> None:
    login = policies["login"]
    assert decide(login, None) == decide(login, 0.0)


@pytest.mark.parametrize("score", [None, 0.0, 50.0, 99.99, 100.0])
def test_a_consequential_verify_is_pending_review_whatever_the_score(
        policies: PolicySet, score: float | None) -> None:
    proposal = decide(policies["identity_check"], score)
    assert proposal.outcome is Outcome.PENDING_REVIEW
    assert Reason.REVIEW_REQUIRED in proposal.reasons


def test_a_consequential_search_is_pending_with_or_without_a_candidate(
        policies: PolicySet) -> None:
    # An immediate no_match beside a pending review would tell the side of the threshold.
    watchlist = policies["watchlist_search"]
    assert decide(watchlist, 100.0).outcome is Outcome.PENDING_REVIEW
    assert decide(watchlist, None).outcome is Outcome.PENDING_REVIEW
    assert decide(watchlist, 10.0).outcome is Outcome.PENDING_REVIEW


def test_a_confirmed_search_review_without_a_candidate_ends_as_no_match() -> None:
    search_review = replace(review(), kind=DecisionKind.SEARCH)
    result = resolve(replace(search_review, votes=(vote("rev1", Vote.CONFIRM),)))
    assert result is not None
    assert result.outcome is Outcome.NO_MATCH
    assert result.matched_face_id is None


def test_a_pending_decision_shows_its_requester_only_that_review_is_required(
        policies: PolicySet) -> None:
    pending = Decision(
        id="d1", kind=DecisionKind.VERIFY, outcome=Outcome.PENDING_REVIEW,
        reasons=("similarity_at_or_above_threshold", "consequential_review_required"),
        policy_name="identity_check", policy_version="0" * 64, threshold=80.0,
        collection_id="c", subject_id="s", similarity=93.0,
        candidates=(Candidate("f1", "s", 93.0),), review_id="r1")
    shown = requester_view(pending)
    assert shown.reasons == ("review_required",)
    assert shown.similarity is None
    assert shown.candidates == ()
    assert shown.matched_face_id is None
    final = replace(pending, outcome=Outcome.MATCH, matched_face_id="f1")
    assert requester_view(final) == final


def test_the_review_band_sends_scores_near_the_threshold_to_review(policies: PolicySet) -> None:
    cleaning = policies["dataset_cleaning"]
    low, high = cleaning.human_review.band or (0.0, 0.0)
    assert (low, high) == (50.0, 87.0)  # measured: see the policy file
    assert decide(cleaning, low - 0.1).outcome is Outcome.NO_MATCH
    assert decide(cleaning, low).outcome is Outcome.PENDING_REVIEW
    assert decide(cleaning, cleaning.min_similarity).outcome is Outcome.PENDING_REVIEW
    assert decide(cleaning, high - 0.1).outcome is Outcome.PENDING_REVIEW
    assert decide(cleaning, high).outcome is Outcome.MATCH


def test_the_requester_cannot_review_their_own_decision() -> None:
    with pytest.raises(ReviewerIsRequester):
        check_vote(review(), "app1", NOW, None)
    with pytest.raises(ReviewerIsRequester):
        check_vote(review(), None, NOW, None)


# Two keys of one person (rev1, rev1b) and the requester's person also holding a
# reviewer key (revA): the rules count owners, not keys.
OWNERS = {"app1": "alice@example.org", "revA": "alice@example.org",
          "rev1": "bob@example.org", "rev1b": "bob@example.org", "rev2": "carol@example.org"}


def test_a_reviewer_owned_by_the_requesters_owner_cannot_review() -> None:
    with pytest.raises(ReviewerIsRequester):
        check_vote(review(), "revA", NOW, None, OWNERS)
    check_vote(review(), "rev1", NOW, None, OWNERS)


def test_a_second_key_of_the_same_owner_cannot_cast_the_second_vote() -> None:
    r = replace(review(2), votes=(vote("rev1", Vote.CONFIRM),))
    with pytest.raises(OwnerAlreadyVoted) as info:
        check_vote(r, "rev1b", NOW, None, OWNERS)
    assert info.value.code == "owner_already_voted"
    check_vote(r, "rev2", NOW, None, OWNERS)


def test_votes_of_one_owner_count_once_and_the_requesters_owner_not_at_all() -> None:
    two_keys_one_person = replace(review(2), votes=(vote("rev1", Vote.CONFIRM),
                                                    vote("rev1b", Vote.CONFIRM)))
    assert resolve(two_keys_one_person, OWNERS) is None
    with_requester = replace(review(2), votes=(vote("rev1", Vote.CONFIRM),
                                               vote("revA", Vote.CONFIRM)))
    assert resolve(with_requester, OWNERS) is None
    two_people = replace(review(2, (Candidate("f1", "s", 90.0),)),
                         votes=(vote("rev1", Vote.CONFIRM), vote("rev2", Vote.CONFIRM)))
    result = resolve(two_people, OWNERS)
    assert result is not None
    assert result.status is ReviewStatus.CONFIRMED


def test_a_reviewer_cannot_vote_twice() -> None:
    r = replace(review(2), votes=(vote("rev1", Vote.CONFIRM),))
    with pytest.raises(AlreadyVoted):
        check_vote(r, "rev1", NOW, None)


def test_an_expired_or_closed_review_takes_no_votes() -> None:
    with pytest.raises(ReviewClosed):
        check_vote(review(), "rev1", NOW + timedelta(hours=2), None)
    with pytest.raises(ReviewClosed):
        check_vote(replace(review(), status=ReviewStatus.CONFIRMED), "rev1", NOW, None)


def test_a_vote_for_a_face_that_is_not_a_candidate_is_refused() -> None:
    with pytest.raises(UnknownCandidate):
        check_vote(review(candidates=(Candidate("f1", "s", 90.0),)), "rev1", NOW, "f9")


def test_one_confirm_resolves_a_one_person_review_as_match() -> None:
    result = resolve(replace(review(), votes=(vote("rev1", Vote.CONFIRM),)))
    assert result is not None
    assert result.outcome is Outcome.MATCH


def test_one_reject_resolves_a_one_person_review_as_no_match() -> None:
    result = resolve(replace(review(), votes=(vote("rev1", Vote.REJECT),)))
    assert result is not None
    assert result.outcome is Outcome.NO_MATCH


def test_one_of_two_reviewers_leaves_the_decision_pending() -> None:
    assert resolve(replace(review(2), votes=(vote("rev1", Vote.CONFIRM),))) is None


def test_two_confirms_by_the_same_key_never_count_as_two_reviewers() -> None:
    r = replace(review(2), votes=(vote("rev1", Vote.CONFIRM), vote("rev1", Vote.CONFIRM)))
    assert resolve(r) is None


def test_a_requesters_vote_never_counts() -> None:
    r = replace(review(2), votes=(vote("app1", Vote.CONFIRM), vote("rev1", Vote.CONFIRM)))
    assert resolve(r) is None


def test_two_reviewers_who_disagree_reject_and_flag_the_decision() -> None:
    result = resolve(replace(review(2), votes=(vote("rev1", Vote.CONFIRM),
                                               vote("rev2", Vote.REJECT))))
    assert result is not None
    assert result.outcome is Outcome.REJECTED
    assert result.flagged
    assert result.status is ReviewStatus.DISAGREED


def test_two_reviewers_confirming_different_candidates_disagree() -> None:
    candidates = (Candidate("f1", "s1", 95.0), Candidate("f2", "s2", 90.0))
    result = resolve(replace(review(2, candidates), votes=(
        vote("rev1", Vote.CONFIRM, "f1"), vote("rev2", Vote.CONFIRM, "f2"))))
    assert result is not None
    assert result.outcome is Outcome.REJECTED


def test_two_reviewers_confirming_the_same_candidate_make_a_match_on_it() -> None:
    candidates = (Candidate("f1", "s1", 95.0), Candidate("f2", "s2", 90.0))
    result = resolve(replace(review(2, candidates), votes=(
        vote("rev1", Vote.CONFIRM, "f2"), vote("rev2", Vote.CONFIRM, "f2"))))
    assert result is not None
    assert result.outcome is Outcome.MATCH
    assert result.matched_face_id == "f2"
