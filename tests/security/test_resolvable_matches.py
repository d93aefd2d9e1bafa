"""Issue 17, item 4: a final confirmed search names the subject to the app that asked,
and REST search by face (`POST /v1/collections/{id}/faces/{face_id}/search`) decides
under a policy like every other search. Through the real HTTP server.

Why it was unusable: a confirmed `watchlist_search` gave `matched_face_id` with
`subject_id: null` (a decision's `subject_id` is the subject a verify *claims*; a search
claims none), and an app may not look a face id up. Now every decision carries
`matched_subject_id`, derived from the matched candidate, on a final match only.

Attacks: a pending decision, a rejected one, another app's key, an erased subject; a
search by face under an unbound policy, by a role that may not search, outside the
key's scope, of a missing face, and of a collection holding a locked subject.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from tests.conftest import KeyFactory
from tests.fakes import FakeEngine
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.integration.verify_support import b64, enroll, make_collection, scripted, vector_at
from tests.security.conftest import Http
from tests.security.support import (  # noqa: F401 (settings: the --db backend)
    ALICE,
    BOB,
    audit_rows,
    decision_count,
    settings,
)


@pytest.fixture
def faces(app: Flask) -> dict[str, str]:
    """`watch`: alice (two faces) and bob, bound to login, tagging and the watchlist."""
    make_collection(app, "watch", ("login", "photo_tagging", "watchlist_search"))
    return {"alice": enroll(app, "watch", "alice", ALICE),
            "alice2": enroll(app, "watch", "alice", vector_at(ALICE, 97.0, seed=5)),
            "bob": enroll(app, "watch", "bob", vector_at(ALICE, 70.0, seed=6))}


def watchlist(http: Http, key: str, engine: FakeEngine) -> dict[str, Any]:
    reply = http.post("/v1/collections/watch/search", key=key, json_body={
        "policy": "watchlist_search", "image": b64(scripted(engine, [vector_at(ALICE, 99.0)]))})
    assert reply.status == 200, reply.body
    decision: dict[str, Any] = reply.json()["decision"]
    assert decision["outcome"] == "pending_review"
    return decision


def by_face(http: Http, key: str, face_id: str, **body: Any) -> Any:
    return http.post(f"/v1/collections/watch/faces/{face_id}/search", key=key,
                     json_body=body)


def vote_both(http: Http, make_key: KeyFactory, review_id: str, vote: str) -> None:
    for name in ("reviewer one", "reviewer two"):
        reply = http.post(f"/v1/reviews/{review_id}/decision",
                          key=make_key("reviewer", name=name),
                          json_body={"decision": vote, "reason": "looked at it"})
        assert reply.status == 200, reply.body


def read(http: Http, decision_id: str, key: str) -> Any:
    return http.get(f"/v1/decisions/{decision_id}", key=key)


def test_a_confirmed_search_names_the_matched_subject_to_the_app_that_asked(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        faces: dict[str, str]) -> None:
    app_key = make_key("app")
    pending = watchlist(http, app_key, fake_engine)
    assert pending["matched_subject_id"] is None
    before = read(http, pending["decision_id"], app_key).json()
    assert before["matched_subject_id"] is None
    assert before["matched_face_id"] is None
    vote_both(http, make_key, pending["review_id"], "confirm")
    final = read(http, pending["decision_id"], app_key).json()
    assert final["outcome"] == "match"
    assert final["matched_face_id"] == faces["alice"]
    assert final["matched_subject_id"] == "alice"
    assert final["subject_id"] is None  # a search claims no subject
    auditor = read(http, pending["decision_id"], make_key("auditor")).json()
    assert auditor["matched_subject_id"] == "alice"


def test_a_rejected_search_names_nobody(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        faces: dict[str, str]) -> None:
    app_key = make_key("app")
    pending = watchlist(http, app_key, fake_engine)
    vote_both(http, make_key, pending["review_id"], "reject")
    final = read(http, pending["decision_id"], app_key).json()
    assert final["outcome"] == "no_match"
    assert final["matched_subject_id"] is None
    assert "alice" not in str(final)


def test_another_apps_key_cannot_read_the_confirmed_match(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        faces: dict[str, str]) -> None:
    pending = watchlist(http, make_key("app"), fake_engine)
    vote_both(http, make_key, pending["review_id"], "confirm")
    for other in (make_key("app"), make_key("app", collections=["watch"]),
                  make_key("operator")):
        reply = read(http, pending["decision_id"], other)
        assert reply.status in (403, 404), reply.body
        assert b"alice" not in reply.body
    # The out-of-scope read answers like a missing decision, and is audited.
    missing = read(http, "no-such-decision", make_key("app"))
    stolen = read(http, pending["decision_id"], make_key("app"))
    assert stolen.status == missing.status == 404
    assert stolen.json()["error"]["code"] == missing.json()["error"]["code"]
    assert any(e["details"].get("reason") == "out_of_scope"
               or e["reason"] == "out_of_scope" for e in audit_rows(app, "authz.deny"))


def test_an_erased_subject_is_no_longer_named(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        faces: dict[str, str]) -> None:
    app_key = make_key("app")
    pending = watchlist(http, app_key, fake_engine)
    vote_both(http, make_key, pending["review_id"], "confirm")
    erased = http.delete("/v1/collections/watch/subjects/alice", key=make_key("operator"))
    assert erased.status == 200, erased.body
    final = read(http, pending["decision_id"], app_key).json()
    assert final["matched_subject_id"] is None
    assert final["matched_face_id"] is None


# --- REST search by face -----------------------------------------------------------------

def test_search_by_face_decides_under_the_named_policy_and_leaves_out_the_probe(
        app: Flask, http: Http, make_key: KeyFactory, faces: dict[str, str]) -> None:
    reply = by_face(http, make_key("app"), faces["alice"], policy="photo_tagging")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["SearchedFaceId"] == faces["alice"]
    found = [(m["Face"]["FaceId"], m["Face"]["ExternalImageId"]) for m in body["FaceMatches"]]
    assert found[0] == (faces["alice2"], "alice")
    assert faces["alice"] not in [f for f, _ in found]
    decision = body["decision"]
    assert (decision["outcome"], decision["kind"], decision["matched_subject_id"]) == (
        "match", "search", "alice")
    assert decision["policy"]["name"] == "photo_tagging"
    event = audit_rows(app, "search.decision")[-1]
    assert event["details"]["searched_face_id"] == faces["alice"]
    assert event["details"]["liveness"] == "not_required"


def test_search_by_face_under_a_consequential_policy_waits_for_two_reviewers(
        http: Http, make_key: KeyFactory, faces: dict[str, str]) -> None:
    app_key = make_key("app")
    reply = by_face(http, app_key, faces["alice"], policy="watchlist_search")
    body = reply.json()
    assert body["FaceMatches"] == []
    decision = body["decision"]
    assert decision["outcome"] == "pending_review"
    assert decision["reasons"] == ["review_required"]
    assert decision["matched_subject_id"] is None
    vote_both(http, make_key, decision["review_id"], "confirm")
    final = read(http, decision["decision_id"], app_key).json()
    assert final["matched_subject_id"] == "alice"
    assert final["matched_face_id"] == faces["alice2"]


def test_search_by_face_refusals(app: Flask, http: Http, make_key: KeyFactory,
                                 faces: dict[str, str]) -> None:
    make_collection(app, "door", ("login",))
    door_face = enroll(app, "door", "carol", BOB)
    app_key = make_key("app")
    unbound = by_face(http, app_key, faces["alice"], policy="identity_check")
    assert unbound.status == 422  # a verify policy is not a search policy
    not_bound = http.post(f"/v1/collections/door/faces/{door_face}/search", key=app_key,
                          json_body={"policy": "photo_tagging"})
    assert not_bound.status == 403
    assert not_bound.json()["error"]["code"] == "policy_not_bound"
    operator = by_face(http, make_key("operator"), faces["alice"], policy="photo_tagging")
    assert operator.status == 403
    scoped = by_face(http, make_key("app", collections=["door"]), faces["alice"],
                     policy="photo_tagging")
    assert scoped.status == 404
    not_allowed = by_face(http, make_key("app", policies=["login"]), faces["alice"],
                          policy="photo_tagging")
    assert not_allowed.status == 403
    missing = by_face(http, app_key, "00000000-0000-4000-8000-000000000000",
                      policy="photo_tagging")
    assert missing.status == 404
    no_policy = by_face(http, app_key, faces["alice"])
    assert no_policy.status == 422
    assert decision_count(app) == 0
    assert any(e["details"].get("refusal") == "policy_not_bound"
               for e in audit_rows(app, "authz.deny"))


def test_search_by_face_leaves_out_a_locked_subject(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        faces: dict[str, str]) -> None:
    app_key = make_key("app")
    for _ in range(5):  # login locks after 5 consecutive failures
        reply = http.post("/v1/verify", key=app_key, json_body={
            "collection_id": "watch", "subject_id": "bob", "policy": "login",
            "image": b64(scripted(fake_engine, [vector_at(BOB, 99.0)]))})
        assert reply.json()["outcome"] == "no_match"
    body = by_face(http, app_key, faces["alice"], policy="photo_tagging").json()
    subjects = {m["Face"]["ExternalImageId"] for m in body["FaceMatches"]}
    assert subjects == {"alice"}  # bob scores 70 >= 60 but is locked


def test_search_by_face_and_the_new_decision_fields_are_documented(http: Http) -> None:
    spec = http.get("/openapi.json").json()
    operation = spec["paths"]["/v1/collections/{collection_id}/faces/{face_id}/search"]["post"]
    assert operation["x-roles"] == ["app"]
    assert {"200", "403", "404", "422"} <= set(operation["responses"])
    assert "liveness_unsupported" in operation["responses"]["403"]["description"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert body["required"] == ["policy"]
    schemas = json.dumps(spec["components"]["schemas"])
    for field in ("matched_subject_id", "liveness_attestation", "liveness"):
        assert field in schemas, field
