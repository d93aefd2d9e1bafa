"""Use case: 1:1 verify under a policy (services/verify.py), on fakes only."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from faceapi.domain.decisions import Decision, Outcome, ReviewStatus
from faceapi.domain.errors import FaceApiError
from faceapi.domain.lockout import Locked
from faceapi.domain.policies import PolicySet, TemplateScoring
from faceapi.services.enroll import IndexFacesRequest, index_faces
from faceapi.services.verify import VerifyRequest, verify
from tests.fakes import ScriptedFace, face, unit_vector
from tests.unit.usecase_world import APP, OPERATOR, World


def enrolled_world() -> World:
    w = World()
    w.collection()
    index_faces(IndexFacesRequest(collection_id="c1", image=w.photo(1), subject_id="s1"),
                actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                decoder=w.decoder, blobs=w.blobs)
    return w


def run(w: World, image: bytes, policy: str = "login", subject: str = "s1") -> Decision:
    return verify(VerifyRequest(collection_id="c1", subject_id=subject, image=image,
                                policy=policy),
                  actor=APP, engine=w.engine, uow=w.store.uow(), policies=w.policies,
                  clock=w.clock, blobs=w.blobs, decoder=w.decoder)


def test_the_enrolled_persons_selfie_matches_under_login_and_is_final() -> None:
    w = enrolled_world()
    decision = run(w, w.other_photo(1, "selfie"))
    assert decision.outcome is Outcome.MATCH
    assert decision.final
    assert decision.similarity == pytest.approx(100.0)
    assert w.store.state.decisions[decision.id].outcome is Outcome.MATCH
    assert w.store.state.reviews == {}
    assert w.store.actions[-1] == "verify.decision"


def test_another_persons_selfie_does_not_match() -> None:
    w = enrolled_world()
    decision = run(w, w.other_photo(2, "stranger"))
    assert decision.outcome is Outcome.NO_MATCH
    assert decision.matched_face_id is None


def test_an_unknown_subject_is_decided_like_a_low_score() -> None:
    w = enrolled_world()
    decision = run(w, w.other_photo(1, "selfie"), subject="nobody")
    assert decision.outcome is Outcome.NO_MATCH
    assert decision.similarity is None


def test_a_consequential_verify_is_pending_until_a_reviewer_decides() -> None:
    w = enrolled_world()
    decision = run(w, w.other_photo(1, "selfie"), policy="identity_check")
    assert decision.outcome is Outcome.PENDING_REVIEW
    assert not decision.final
    assert decision.decided_at is None
    review = w.store.state.reviews[decision.review_id or ""]
    assert review.status is ReviewStatus.PENDING
    assert review.decision_id == decision.id
    assert any(key.startswith(f"reviews/{review.id}/") for key in w.blobs.blobs)


def test_two_faces_in_the_selfie_are_rejected_without_comparing() -> None:
    w = enrolled_world()
    decision = run(w, w.photo(1, faces=2))
    assert decision.outcome is Outcome.REJECTED
    assert decision.reasons == ("multiple_faces",)
    assert decision.candidates == ()


def test_a_face_too_small_for_the_policy_is_rejected() -> None:
    w = enrolled_world()
    decision = run(w, w.photo(1, width_px=40))
    assert decision.outcome is Outcome.REJECTED
    assert decision.similarity is None


def test_five_failures_lock_the_subject_and_the_next_try_is_refused_and_audited() -> None:
    w = enrolled_world()
    for n in range(5):
        run(w, w.other_photo(2, f"guess{n}"))
    with pytest.raises(Locked):
        run(w, w.other_photo(1, "the real one"))
    assert "lockout.lock" in w.store.actions
    assert len(w.store.state.decisions) == 5  # the refused try decided nothing
    w.clock.advance(hours=2)
    assert run(w, w.other_photo(1, "later")).outcome is Outcome.MATCH


def test_a_policy_the_collection_does_not_bind_is_refused() -> None:
    w = World()
    w.collection(policies=("login",))
    with pytest.raises(FaceApiError) as refused:
        run(w, w.photo(1), policy="identity_check")
    assert refused.value.code == "policy_not_bound"
    assert w.store.state.decisions == {}


def _two_faced_subject(w: World) -> bytes:
    """Subject s1 enrolled from two photos whose descriptors lie either side of the
    probe's: each alone scores 70 with it (the fake's similarity is cosine x 100), their
    fused template 100."""
    probe, other = np.asarray(unit_vector(1)), np.asarray(unit_vector(2))
    other = other - (other @ probe) * probe
    other /= np.linalg.norm(other)
    side = math.sqrt(1 - 0.7 ** 2)
    w.collection()
    for n, sign in enumerate((1, -1)):
        data = f"enrol-{n}".encode()
        w.engine.script(data, [ScriptedFace(face(), tuple(0.7 * probe + sign * side * other))])
        index_faces(IndexFacesRequest(collection_id="c1", image=data, subject_id="s1"),
                    actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                    decoder=w.decoder, blobs=w.blobs)
    return w.other_photo(1, "selfie")


def test_login_scores_a_subject_with_two_faces_as_one_fused_template() -> None:
    w = World()
    decision = run(w, _two_faced_subject(w))
    assert decision.outcome is Outcome.MATCH
    assert decision.similarity == pytest.approx(100.0)
    # Each face keeps its own score as a candidate; the matched face is the best one.
    assert [round(c.similarity, 6) for c in decision.candidates] == [70.0, 70.0]
    assert decision.matched_face_id == decision.candidates[0].face_id
    assert w.store.audit.committed[-1].event.details["template_scoring"] == "fused"


def test_a_best_of_policy_scores_the_same_subject_by_its_best_face() -> None:
    w = World()
    selfie = _two_faced_subject(w)
    best_of = replace(w.policies["login"], template_scoring=TemplateScoring.BEST_OF)
    decision = verify(VerifyRequest(collection_id="c1", subject_id="s1", image=selfie,
                                    policy="login"),
                      actor=APP, engine=w.engine, uow=w.store.uow(),
                      policies=PolicySet({**w.policies, "login": best_of}), clock=w.clock,
                      blobs=w.blobs, decoder=w.decoder)
    assert decision.outcome is Outcome.NO_MATCH
    assert decision.similarity == pytest.approx(70.0)
    assert w.store.audit.committed[-1].event.details["template_scoring"] == "best_of"


def test_fusing_one_enrolled_face_scores_exactly_as_best_of() -> None:
    w = enrolled_world()
    decision = run(w, w.other_photo(2, "stranger"))
    assert decision.similarity == pytest.approx(w.engine.similarity(unit_vector(1),
                                                                     unit_vector(2)))
