"""Use case: 1:N search under a policy (services/search.py), on fakes."""

from __future__ import annotations

from faceapi.domain.decisions import Outcome
from faceapi.services.enroll import IndexFacesRequest, index_faces
from faceapi.services.search import SearchRequest, SearchResult, search
from tests.unit.usecase_world import APP, OPERATOR, World


def world_of(*subjects: tuple[str, int]) -> World:
    w = World()
    w.collection()
    for subject, seed in subjects:
        index_faces(IndexFacesRequest(collection_id="c1", image=w.photo(seed),
                                      subject_id=subject),
                    actor=OPERATOR, engine=w.engine, uow=w.store.uow(), clock=w.clock,
                    decoder=w.decoder, blobs=w.blobs)
    return w


def run(w: World, image: bytes) -> SearchResult:
    return search(SearchRequest(collection_id="c1", image=image, policy="watchlist_search"),
                  actor=APP, engine=w.engine, uow=w.store.uow(), index=w.index,
                  policies=w.policies, clock=w.clock, blobs=w.blobs, decoder=w.decoder)


def test_a_consequential_search_hit_waits_for_two_reviewers_and_shows_no_match_yet() -> None:
    w = world_of(("alice", 1), ("bob", 2))
    result = run(w, w.other_photo(1, "probe"))
    assert result.decision.outcome is Outcome.PENDING_REVIEW
    assert result.face_matches == ()
    assert [c.subject_id for c in result.decision.candidates] == ["alice"]
    review = w.store.state.reviews[result.decision.review_id or ""]
    assert review.required_reviewers == 2
    assert w.store.actions[-1] in {"search.decision", "review.create"}


def test_a_probe_of_nobody_enrolled_has_no_candidates() -> None:
    w = world_of(("alice", 1))
    result = run(w, w.other_photo(3, "stranger"))
    assert result.decision.candidates == ()
    assert result.decision.outcome is not Outcome.MATCH


def test_a_probe_without_a_face_is_rejected_and_nothing_is_searched() -> None:
    w = world_of(("alice", 1))
    result = run(w, b"an empty wall")
    assert result.decision.outcome is Outcome.REJECTED
    assert result.decision.reasons == ("no_face",)
