"""Human review: a consequential verify or search never becomes `match` without the
reviewers its policy asks for, whatever path is tried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from faceapi.domain.access import Actor
from faceapi.domain.decisions import ReviewerIsRequester, Vote
from faceapi.services.review import ReviewEvidenceEraser, VoteRequest, decide_review
from tests.conftest import HeadersFactory
from tests.fakes import FakeClock, FakeEngine, unit_vector
from tests.integration.verify_support import (
    b64,
    enroll,
    make_collection,
    row_counts,
    scripted,
    vector_at,
)

ALICE = unit_vector(1)
BOB = unit_vector(2)


@pytest.fixture(autouse=True)
def people(app: Flask) -> str:
    make_collection(app, "watch")
    enroll(app, "watch", "alice", ALICE)
    enroll(app, "watch", "bob", BOB)
    return "watch"


def identity_check(client: FlaskClient, engine: FakeEngine, headers: dict[str, str],
                   similarity: float = 99.0) -> dict[str, Any]:
    probe = scripted(engine, [vector_at(ALICE, similarity)])
    response = client.post("/v1/verify", headers=headers, json={
        "collection_id": "watch", "subject_id": "alice", "policy": "identity_check",
        "image": b64(probe)})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def watchlist(client: FlaskClient, engine: FakeEngine, headers: dict[str, str],
              similarity: float = 99.0) -> dict[str, Any]:
    probe = scripted(engine, [vector_at(ALICE, similarity)])
    response = client.post("/v1/collections/watch/search", headers=headers, json={
        "policy": "watchlist_search", "image": b64(probe)})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def outcome(client: FlaskClient, decision_id: object, headers: dict[str, str]) -> str:
    body = client.get(f"/v1/decisions/{decision_id}", headers=headers).get_json()
    return str(body["outcome"])


def vote(client: FlaskClient, review_id: object, headers: dict[str, str],
         decision: str = "confirm", **extra: str) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/v1/reviews/{review_id}/decision", headers=headers,
                           json={"decision": decision, "reason": "faces agree", **extra})
    return response.status_code, response.get_json()


def test_a_consequential_verify_far_above_the_threshold_is_still_pending(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    body = identity_check(client, fake_engine, app_key, similarity=100.0)
    assert body["outcome"] == "pending_review"
    assert body["final"] is False
    assert body["similarity"] is None
    assert body["review_id"]
    assert outcome(client, body["decision_id"], app_key) == "pending_review"


def test_a_reviewer_confirming_makes_the_decision_a_final_match(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    body = identity_check(client, fake_engine, app_key)
    status, review = vote(client, body["review_id"], auth_headers("reviewer"))
    assert status == 200, review
    assert review["status"] == "confirmed"
    final = client.get(f"/v1/decisions/{body['decision_id']}", headers=app_key).get_json()
    assert final["outcome"] == "match"
    assert final["final"] is True
    assert "reviewer_confirmed" in final["reasons"]


def test_a_reviewer_rejecting_makes_it_no_match(client: FlaskClient, fake_engine: FakeEngine,
                                               auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    body = identity_check(client, fake_engine, app_key)
    vote(client, body["review_id"], auth_headers("reviewer"), "reject")
    assert outcome(client, body["decision_id"], app_key) == "no_match"


def test_the_requester_can_never_review_its_own_decision(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    body = identity_check(client, fake_engine, app_key)
    # Over HTTP the app's role cannot reach the queue at all ...
    status, _ = vote(client, body["review_id"], app_key)
    assert status == 403
    # ... and the service refuses the requester's key id even with a reviewer's role.
    d = app.extensions["faceapi"]
    decision = client.get(f"/v1/decisions/{body['decision_id']}", headers=app_key).get_json()
    with d.store.uow() as uow:
        requester = uow.decisions.get(decision["decision_id"]).requester_key_id
    as_requester = Actor(role="reviewer", key_id=requester)
    with pytest.raises(ReviewerIsRequester):
        decide_review(VoteRequest(str(body["review_id"]), Vote.CONFIRM, "it is me"),
                      actor=as_requester, uow=d.store.uow(), blobs=d.blobs, clock=d.clock)
    assert outcome(client, body["decision_id"], app_key) == "pending_review"


def test_a_consequential_search_hides_candidates_and_waits_for_two_reviewers(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    body = watchlist(client, fake_engine, app_key, similarity=100.0)
    decision = body["decision"]
    assert isinstance(decision, dict)
    assert decision["outcome"] == "pending_review"
    assert body["FaceMatches"] == []
    first, second = auth_headers("reviewer"), auth_headers("reviewer", name="second")
    status, review = vote(client, decision["review_id"], first)
    assert status == 200
    assert review["status"] == "pending"
    assert outcome(client, decision["decision_id"], app_key) == "pending_review"
    # The same reviewer twice is still one reviewer.
    status, error = vote(client, decision["review_id"], first)
    assert status == 409
    assert error["error"]["code"] == "already_voted"
    assert outcome(client, decision["decision_id"], app_key) == "pending_review"
    status, review = vote(client, decision["review_id"], second)
    assert review["status"] == "confirmed"
    final = client.get(f"/v1/decisions/{decision['decision_id']}", headers=app_key).get_json()
    assert final["outcome"] == "match"
    assert final["matched_face_id"] == review["candidates"][0]["face_id"]


def test_two_reviewers_who_disagree_reject_the_search_and_flag_it(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    decision = watchlist(client, fake_engine, app_key)["decision"]
    assert isinstance(decision, dict)
    vote(client, decision["review_id"], auth_headers("reviewer"), "confirm")
    status, review = vote(client, decision["review_id"],
                          auth_headers("reviewer", name="second"), "reject")
    assert status == 200
    assert review["status"] == "disagreed"
    assert review["flagged"] is True
    assert outcome(client, decision["decision_id"], app_key) == "rejected"


def test_an_expired_review_rejects_the_decision_and_takes_no_more_votes(
        client: FlaskClient, fake_engine: FakeEngine, clock: FakeClock,
        auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    body = identity_check(client, fake_engine, app_key)
    clock.advance(hours=73)  # identity_check: max_wait_hours 72
    status, error = vote(client, body["review_id"], auth_headers("reviewer"))
    assert status == 409
    assert error["error"]["code"] == "review_closed"
    final = client.get(f"/v1/decisions/{body['decision_id']}", headers=app_key).get_json()
    assert final["outcome"] == "rejected"
    assert "review_expired" in final["reasons"]


def test_a_consequential_search_without_candidates_waits_like_one_with_them(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    # An immediate no_match would tell the app that nobody on the list scored high.
    app_key = auth_headers("app")
    low = watchlist(client, fake_engine, app_key, similarity=5.0)
    high = watchlist(client, fake_engine, app_key, similarity=99.0)
    assert low.keys() == high.keys()
    shown = {k: v for k, v in low["decision"].items()
             if k not in ("decision_id", "review_id", "audit_event_id", "created_at")}
    assert shown == {k: v for k, v in high["decision"].items() if k in shown}
    assert low["decision"]["outcome"] == "pending_review"
    # Reviewers confirming a review that has no candidate end it as no_match.
    review_id = low["decision"]["review_id"]
    vote(client, review_id, auth_headers("reviewer"), "confirm")
    vote(client, review_id, auth_headers("reviewer", name="second"), "confirm")
    assert outcome(client, low["decision"]["decision_id"], app_key) == "no_match"


def test_a_non_consequential_search_returns_rekognition_shaped_matches(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [vector_at(ALICE, 95.0)])
    body = client.post("/v1/collections/watch/search", headers=auth_headers("app"), json={
        "policy": "photo_tagging", "image": b64(probe), "max_faces": 5}).get_json()
    assert body["decision"]["outcome"] == "match"
    match = body["FaceMatches"][0]
    assert match["Similarity"] == pytest.approx(95.0, abs=0.01)
    assert match["Face"]["ExternalImageId"] == "alice"
    assert set(match["Face"]) >= {"FaceId", "BoundingBox", "ImageId", "Confidence"}
    assert "SearchedFaceBoundingBox" in body
    assert "FaceModelVersion" in body


def test_search_of_an_unknown_collection_is_404(client: FlaskClient, fake_engine: FakeEngine,
                                                auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [ALICE])
    response = client.post("/v1/collections/nope/search", headers=auth_headers("app"),
                           json={"policy": "photo_tagging", "image": b64(probe)})
    assert response.status_code == 404


def test_search_with_an_unknown_policy_is_422(client: FlaskClient, fake_engine: FakeEngine,
                                              auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [ALICE])
    response = client.post("/v1/collections/watch/search", headers=auth_headers("app"),
                           json={"policy": "everything", "image": b64(probe)})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "unknown_policy"


@pytest.mark.parametrize("case", [
    ({"image": b64(b"GIF89a-not-allowed")}, (415, "unsupported_image_format")),
    ({"image": b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)}, (422, "invalid_image")),
    ({"image": None}, (422, "missing_image")),
    ({"threshold": 101}, (422, "validation_error")),
    ({"max_faces": 0}, (422, "validation_error")),
    ({"policy": ""}, (422, "validation_error")),
    ({"shown": True}, (422, "validation_error")),
])
def test_a_rejected_search_gets_its_code_and_writes_nothing(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory,
        case: tuple[dict[str, Any], tuple[int, str]]) -> None:
    body, expected = case
    request = {"policy": "photo_tagging", "image": b64(scripted(fake_engine, [ALICE]))}
    request.update(body)
    request = {k: v for k, v in request.items() if v is not None}
    headers = auth_headers("app")
    before = row_counts(app)
    response = client.post("/v1/collections/watch/search", headers=headers, json=request)
    assert (response.status_code, response.get_json()["error"]["code"]) == expected
    assert row_counts(app) == before


def test_a_reviewer_sees_the_evidence_and_it_is_gone_after_retention(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine, clock: FakeClock,
         auth_headers: HeadersFactory) -> None:
    body = identity_check(client, fake_engine, auth_headers("app"))
    reviewer = auth_headers("reviewer")
    item = client.get(f"/v1/reviews/{body['review_id']}", headers=reviewer).get_json()
    assert {e["name"] for e in item["evidence"]} >= {"probe.jpg"}
    image = client.get(item["evidence"][0]["url"], headers=reviewer)
    assert image.status_code == 200
    assert image.data.startswith(b"\xff\xd8")
    assert image.headers["Cache-Control"] == "no-store"
    with app.extensions["faceapi"].store.engine.connect() as conn:
        viewed = conn.execute(select(audit_events.c.resource).where(
            audit_events.c.action == "review.evidence_view")).scalars().all()
    assert viewed == [f"reviews/{body['review_id']}"]
    folder = Path(app.extensions["faceapi"].settings.resolved_blob_dir) / "reviews" / \
        str(body["review_id"])
    assert folder.is_dir()
    vote(client, body["review_id"], reviewer)
    clock.advance(days=31)  # identity_check keeps evidence 30 days after the review
    listing = client.get("/v1/reviews?status=all", headers=reviewer)
    assert listing.status_code == 200
    assert not folder.exists()
    assert client.get(item["evidence"][0]["url"], headers=reviewer).status_code == 404


def test_the_queue_lists_pending_reviews_oldest_first_and_filters_by_policy(
        client: FlaskClient, fake_engine: FakeEngine, clock: FakeClock,
        auth_headers: HeadersFactory) -> None:
    app_key = auth_headers("app")
    first = identity_check(client, fake_engine, app_key)
    clock.advance(minutes=10)
    watchlist(client, fake_engine, app_key)
    reviewer = auth_headers("reviewer")
    listed = client.get("/v1/reviews", headers=reviewer).get_json()["reviews"]
    assert [r["policy"]["name"] for r in listed] == ["identity_check", "watchlist_search"]
    only = client.get("/v1/reviews?policy=identity_check", headers=reviewer).get_json()
    assert [r["review_id"] for r in only["reviews"]] == [first["review_id"]]
    older = client.get("/v1/reviews?older_than_minutes=5", headers=reviewer).get_json()
    assert [r["review_id"] for r in older["reviews"]] == [first["review_id"]]


def test_erasing_a_subject_removes_its_review_evidence_and_rejects_its_review(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    from faceapi.services.erase import erase_subject
    from tests.integration.verify_support import OPERATOR

    app_key = auth_headers("app")
    body = identity_check(client, fake_engine, app_key)
    d = app.extensions["faceapi"]
    folder = Path(d.settings.resolved_blob_dir) / "reviews" / str(body["review_id"])
    assert folder.is_dir()
    erase_subject("watch", "alice", actor=OPERATOR, uow=d.store.uow(),
                  erasers=(ReviewEvidenceEraser(d.blobs, d.clock),))
    assert not folder.exists()
    final = client.get(f"/v1/decisions/{body['decision_id']}", headers=app_key).get_json()
    assert final["outcome"] == "rejected"
    assert "subject_erased" in final["reasons"]


@pytest.mark.parametrize("kind", ["verify", "search"])
@pytest.mark.parametrize("path", ["far_above", "requester_votes", "one_reviewer_of_two",
                                  "expired"])
def test_no_path_makes_a_consequential_decision_a_match_without_its_reviewers(
        app: Flask, fake_engine: FakeEngine, auth_headers: HeadersFactory, kind: str,
        path: str) -> None:
    client = app.test_client()
    app_key = auth_headers("app")
    d = app.extensions["faceapi"]
    body = identity_check(client, fake_engine, app_key, 100.0) if kind == "verify" else \
        watchlist(client, fake_engine, app_key, 100.0)["decision"]
    assert body["outcome"] == "pending_review"
    review_id = str(body["review_id"])
    if path == "requester_votes":
        with d.store.uow() as uow:
            requester = uow.decisions.get(body["decision_id"]).requester_key_id
        with pytest.raises(ReviewerIsRequester):
            decide_review(VoteRequest(review_id, Vote.CONFIRM, "it is me"),
                          actor=Actor(role="reviewer", key_id=requester), uow=d.store.uow(),
                          blobs=d.blobs, clock=d.clock)
    elif path == "one_reviewer_of_two":
        if kind == "verify":
            pytest.skip("identity_check needs one reviewer")
        assert vote(client, review_id, auth_headers("reviewer"))[0] == 200
    elif path == "expired":
        d.clock.advance(hours=73)
        assert vote(client, review_id, auth_headers("reviewer"))[0] == 409
    final = client.get(f"/v1/decisions/{body['decision_id']}", headers=app_key).get_json()
    assert final["outcome"] != "match"
    assert final["similarity"] is None


def test_a_bad_vote_or_an_unknown_review_is_refused_and_changes_nothing(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    review_id = identity_check(client, fake_engine, auth_headers("app"))["review_id"]
    reviewer = auth_headers("reviewer")
    before = row_counts(app)
    for body, expected in (
            ({"decision": "maybe", "reason": "faces agree"}, (422, "validation_error")),
            ({"decision": "confirm", "reason": "ok"}, (422, "validation_error")),
            ({"decision": "confirm"}, (422, "validation_error")),
            ({"decision": "confirm", "reason": "faces agree", "x": 1},
             (422, "validation_error"))):
        response = client.post(f"/v1/reviews/{review_id}/decision", headers=reviewer,
                               json=body)
        assert (response.status_code, response.get_json()["error"]["code"]) == expected, body
    assert client.get("/v1/reviews/nope", headers=reviewer).status_code == 404
    assert client.post("/v1/reviews/nope/decision", headers=reviewer, json={
        "decision": "confirm", "reason": "faces agree"}).status_code == 404
    for query in ("status=unknown", "limit=0", "older_than_minutes=-1"):
        assert client.get(f"/v1/reviews?{query}", headers=reviewer).status_code == 422
    assert row_counts(app) == before
    assert client.get(f"/v1/reviews/{review_id}",
                      headers=reviewer).get_json()["votes_received"] == 0
