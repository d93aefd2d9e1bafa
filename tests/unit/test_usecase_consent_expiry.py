"""Consent expiry (issue 16, item 4), on fakes with the fake clock: a lapsed consent
stops every use of the subject at once, and `faceapi retention run` erases the subject
through the same erasure and erasers as a manual erasure."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from faceapi.domain.audit import Actor
from faceapi.domain.collections import ConsentBasis, ConsentRequired
from faceapi.domain.decisions import Outcome, Vote
from faceapi.domain.errors import FaceApiError, InvalidParameter
from faceapi.services.collections import ConsentInput, record_consent
from faceapi.services.enroll import IndexFacesRequest, index_faces
from faceapi.services.erase import erase_lapsed_subject
from faceapi.services.face_crops import FaceCropEraser
from faceapi.services.ports import ErasedData, SubjectEraser, UnitOfWork
from faceapi.services.retention import (
    DecisionPseudonymiser,
    RetentionReport,
    ReviewPseudonymiser,
    run_retention,
)
from faceapi.services.review import ReviewEvidenceEraser, VoteRequest, decide_review
from faceapi.services.search import (
    SearchByFaceRequest,
    SearchRequest,
    search,
    search_by_face,
)
from faceapi.services.verify import VerifyRequest, verify
from tests.unit.usecase_world import APP, OPERATOR, REVIEWER, World

JOB = Actor.system("retention")


def consent(days: float | None, reference: str = "form-1", *,
            w: World | None = None) -> ConsentInput:
    expires = None if days is None or w is None else w.clock.now() + timedelta(days=days)
    return ConsentInput(ConsentBasis.EXPLICIT_CONSENT, reference, expires)


def enroll(w: World, subject: str, seed: int, with_consent: ConsentInput | None) -> None:
    index_faces(IndexFacesRequest(collection_id="c1", image=w.other_photo(seed, subject),
                                  subject_id=subject, consent=with_consent),
                actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                decoder=w.decoder, blobs=w.blobs)


def erasers(w: World) -> tuple[SubjectEraser, ...]:
    """What the composition root registers (bootstrap.Container.erasers), on fakes."""
    return (ReviewEvidenceEraser(w.blobs, w.clock), FaceCropEraser(w.blobs),
            DecisionPseudonymiser(), ReviewPseudonymiser())


def world() -> World:
    """alice consents for 30 days, bob for good; both enrolled with crops kept."""
    w = World()
    w.collection(consent_required=True, keep_face_crops=True)
    enroll(w, "alice", 1, consent(30, w=w))
    enroll(w, "bob", 2, consent(None))
    return w


def retention(w: World, *, with_erasers: tuple[SubjectEraser, ...] | None = None
              ) -> RetentionReport:
    return run_retention(uow_factory=w.store.uow, policies=w.policies, clock=w.clock,
                         actor=JOB, erasers=erasers(w) if with_erasers is None
                         else with_erasers)


def subjects(w: World) -> set[str]:
    return {s for _, s in w.store.state.subjects}


def test_retention_erases_a_lapsed_subject_like_a_manual_erasure_and_audits_each() -> None:
    w = world()
    pending = verify(VerifyRequest("c1", "alice", w.other_photo(1, "selfie"), "identity_check"),
                     actor=APP, engine=w.engine, uow=w.store.uow(), policies=w.policies,
                     clock=w.clock, blobs=w.blobs, decoder=w.decoder)
    assert pending.outcome is Outcome.PENDING_REVIEW
    crops_before = [k for k in w.blobs.blobs if k.startswith("faces/")]
    assert crops_before
    w.clock.advance(days=31)
    report = retention(w)
    assert report.subjects_erased == (("c1", "alice"),)
    assert subjects(w) == {"bob"}
    assert {f.subject_id for f in w.store.state.faces.values()} == {"bob"}
    assert [c.subject_id for c in w.store.state.consents] == ["bob"]
    # The crops, the review's evidence, and the ids in the decision and review rows.
    assert not any(k.startswith("reviews/") for k in w.blobs.blobs)
    assert len([k for k in w.blobs.blobs if k.startswith("faces/")]) == len(crops_before) - 1
    assert w.store.state.decisions[pending.id].subject_id is None
    review = w.store.state.reviews[pending.review_id or ""]
    assert review.subject_id is None
    assert {c.subject_id for c in review.candidates} == {""}
    erase_event, summary = w.store.audit.committed[-2:]
    assert erase_event.event.action.value == "subject.erase"
    assert (erase_event.event.subject_id, erase_event.event.reason) == ("alice",
                                                                         "consent_expired")
    assert erase_event.event.actor == JOB
    assert erase_event.event.scores["decisions_pseudonymised_count"] == 1
    assert erase_event.event.scores["reviews_pseudonymised_count"] == 1
    assert erase_event.event.scores["review_evidence_count"] == 1
    assert summary.event.action.value == "retention.run"
    assert summary.event.scores["subjects_erased"] == 1


def test_a_consent_not_yet_lapsed_or_renewed_keeps_the_subject() -> None:
    w = world()
    w.clock.advance(days=29)
    retention(w)
    assert subjects(w) == {"alice", "bob"}
    # Renewed before the end: the newest record is in force, the old expiry is history.
    record_consent("c1", "alice", consent(None, "form-2"), actor=OPERATOR,
                   uow=w.store.uow(), clock=w.clock)
    w.clock.advance(days=5)
    report = retention(w)
    assert report.subjects_erased == ()
    assert subjects(w) == {"alice", "bob"}


def test_a_consent_renewed_after_it_was_listed_wins_over_the_erasure() -> None:
    w = world()
    w.clock.advance(days=31)
    lapsed_at = w.clock.now()
    with w.store.uow() as uow:
        assert uow.consents.lapsed(lapsed_at, 10) == [("c1", "alice")]
    record_consent("c1", "alice", consent(10, "form-2", w=w), actor=OPERATOR,
                   uow=w.store.uow(), clock=w.clock)
    assert erase_lapsed_subject("c1", "alice", now=lapsed_at, actor=JOB, uow=w.store.uow(),
                                erasers=erasers(w)) is None
    assert "alice" in subjects(w)


def test_enrollment_under_a_lapsed_consent_is_refused_until_a_new_one_is_sent() -> None:
    w = world()
    w.clock.advance(days=31)
    before = len(w.store.state.faces)
    with pytest.raises(ConsentRequired) as refused:
        enroll(w, "alice", 1, None)
    assert refused.value.details["refusal"] == "consent_expired"
    # Resending the lapsed consent itself is no renewal either: its expiry has passed.
    lapsed = w.store.state.consents[0]
    with pytest.raises(InvalidParameter):
        enroll(w, "alice", 1, ConsentInput(lapsed.basis, lapsed.reference, lapsed.expires_at))
    assert len(w.store.state.faces) == before
    enroll(w, "alice", 1, consent(30, "form-2", w=w))
    assert len(w.store.state.faces) == before + 1
    assert w.store.state.consents[-1].reference == "form-2"


def test_a_lapsed_consent_also_stops_enrollment_where_none_is_required() -> None:
    w = World()
    w.collection(consent_required=False)
    enroll(w, "carol", 3, consent(1, w=w))
    w.clock.advance(days=2)
    with pytest.raises(ConsentRequired):
        enroll(w, "carol", 3, None)


@pytest.mark.parametrize("expires_at", [datetime(2025, 12, 1, tzinfo=None),
                                        datetime(2030, 1, 1, tzinfo=None)])
def test_a_consent_expiry_must_be_a_future_moment_with_a_zone(expires_at: datetime) -> None:
    w = world()
    past_or_naive = ConsentInput(ConsentBasis.EXPLICIT_CONSENT, "f", expires_at)
    with pytest.raises(InvalidParameter) as refused:
        record_consent("c1", "dave", past_or_naive, actor=OPERATOR, uow=w.store.uow(),
                       clock=w.clock)
    assert refused.value.details["field"] == "consent.expires_at"
    already_over = ConsentInput(ConsentBasis.EXPLICIT_CONSENT, "f", w.clock.now())
    with pytest.raises(InvalidParameter):
        record_consent("c1", "dave", already_over, actor=OPERATOR, uow=w.store.uow(),
                       clock=w.clock)
    assert "dave" not in subjects(w)


def test_searches_leave_out_a_lapsed_subject_at_once_before_any_retention_run() -> None:
    w = world()

    def found(probe_seed: int) -> list[str]:
        result = search(SearchRequest("c1", w.other_photo(probe_seed, "probe"),
                                      "watchlist_search"),
                        actor=APP, engine=w.engine, uow=w.store.uow(), index=w.index,
                        policies=w.policies, clock=w.clock, blobs=w.blobs, decoder=w.decoder)
        return [c.subject_id for c in result.decision.candidates]

    assert found(1) == ["alice"]
    w.clock.advance(days=31)
    assert found(1) == []
    assert found(2) == ["bob"]
    # Nor is a lapsed subject's own face a probe (the emulator's SearchFaces).
    alice_face = next(f for f in w.store.state.faces.values() if f.subject_id == "alice")
    with pytest.raises(ConsentRequired):
        search_by_face(SearchByFaceRequest("c1", alice_face.face_id), actor=OPERATOR,
                       engine=w.engine, uow=w.store.uow(), index=w.index,
                       policies=w.policies, clock=w.clock, blobs=w.blobs)


def test_verify_compares_a_lapsed_subject_with_nothing_like_an_unknown_one() -> None:
    w = world()
    w.clock.advance(days=31)
    decision = verify(VerifyRequest("c1", "alice", w.other_photo(1, "selfie"), "login"),
                      actor=APP, engine=w.engine, uow=w.store.uow(), policies=w.policies,
                      clock=w.clock, blobs=w.blobs, decoder=w.decoder)
    unknown = verify(VerifyRequest("c1", "nobody", w.other_photo(1, "selfie2"), "login"),
                     actor=APP, engine=w.engine, uow=w.store.uow(), policies=w.policies,
                     clock=w.clock, blobs=w.blobs, decoder=w.decoder)
    assert (decision.outcome, decision.similarity, decision.candidates) == (
        unknown.outcome, unknown.similarity, unknown.candidates) == (Outcome.NO_MATCH, None, ())


def test_one_failing_erasure_does_not_stop_the_others_and_is_counted() -> None:
    w = world()
    enroll(w, "carol", 3, consent(30, w=w))
    w.clock.advance(days=31)

    def refuses_alice(uow: UnitOfWork, collection_id: str,
                      subject_id: str | None) -> ErasedData:
        if subject_id == "alice":
            raise FaceApiError("the remote engine is down")
        return ErasedData()

    report = retention(w, with_erasers=(*erasers(w), refuses_alice))
    assert report.subjects_erased == (("c1", "carol"),)
    assert report.erasures_failed == 1
    assert subjects(w) == {"alice", "bob"}  # alice waits, whole, for the next run
    assert w.store.audit.committed[-1].event.scores["erasures_failed"] == 1
    report = retention(w)
    assert report.subjects_erased == (("c1", "alice"),)


def test_a_reviewer_cannot_confirm_a_match_to_a_subject_whose_consent_lapsed() -> None:
    w = world()
    enroll(w, "carol", 3, ConsentInput(ConsentBasis.EXPLICIT_CONSENT, "f",
                                       w.clock.now() + timedelta(hours=1)))
    pending = verify(VerifyRequest("c1", "carol", w.other_photo(3, "selfie"), "identity_check"),
                     actor=APP, engine=w.engine, uow=w.store.uow(), policies=w.policies,
                     clock=w.clock, blobs=w.blobs, decoder=w.decoder)
    w.clock.advance(hours=2)  # the consent has lapsed; the review is still open
    vote = VoteRequest(review_id=pending.review_id or "", vote=Vote.CONFIRM, reason="same")
    with pytest.raises(ConsentRequired):
        decide_review(vote, actor=REVIEWER, uow=w.store.uow(), blobs=w.blobs, clock=w.clock)
    assert w.store.state.decisions[pending.id].outcome is Outcome.PENDING_REVIEW
    # Rejecting names nobody: still allowed, and the decision ends.
    decide_review(replace(vote, vote=Vote.REJECT), actor=REVIEWER, uow=w.store.uow(),
                  blobs=w.blobs, clock=w.clock)
    assert w.store.state.decisions[pending.id].outcome is Outcome.NO_MATCH
