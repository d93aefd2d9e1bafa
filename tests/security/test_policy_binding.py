"""Finding 1 (issue 12): collections are bound to the policies that may be used on them.

Attack: an app key without a policy scope searched a watchlist collection under
`photo_tagging` and got candidates at once, where `watchlist_search` would have asked
two reviewers; the Rekognition-compatible endpoint searched any collection outside any
policy. Now a policy the collection does not bind is refused (403 `policy_not_bound`,
audited), and the emulator decides under the collection's bound search policy.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest
from flask import Flask

from tests.conftest import KeyFactory
from tests.emulator_server import LiveServer, api_key, rekognition_client
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
    audit_rows,
    decision_count,
    review_count,
    settings,
    stored_decision,
)


@pytest.fixture
def watchlist(app: Flask) -> str:
    """A watchlist: bound to the consequential search policy only."""
    make_collection(app, "watch", ("watchlist_search",))
    enroll(app, "watch", "alice", ALICE)
    return "watch"


def refusals(app: Flask) -> list[dict[str, Any]]:
    return [r for r in audit_rows(app, "authz.deny")
            if r["details"].get("refusal") == "policy_not_bound"]


def test_a_search_under_a_policy_the_collection_does_not_bind_is_refused_and_audited(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        watchlist: str) -> None:
    key = make_key("app")  # no policy scope: the binding alone must stop it
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    reply = http.post(f"/v1/collections/{watchlist}/search", key=key,
                      json_body={"policy": "photo_tagging", "image": b64(probe)})
    assert reply.status == 403
    body = reply.json()
    assert body["error"]["code"] == "policy_not_bound"
    assert "FaceMatches" not in body
    assert b"alice" not in reply.body
    assert decision_count(app) == 0
    [event] = refusals(app)
    assert event["details"]["policy"] == "photo_tagging"
    assert event["details"]["collection_id"] == watchlist
    assert event["request_id"] == reply.headers["X-Request-ID"]


def test_a_verify_under_a_policy_the_collection_does_not_bind_is_refused_and_audited(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        watchlist: str) -> None:
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    reply = http.post("/v1/verify", key=make_key("app"), json_body={
        "collection_id": watchlist, "subject_id": "alice", "policy": "login",
        "image": b64(probe)})
    assert reply.status == 403
    assert reply.json()["error"]["code"] == "policy_not_bound"
    assert [e["details"]["policy"] for e in refusals(app)] == ["login"]


def test_the_bound_policy_still_works_and_waits_for_its_reviewers(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        watchlist: str) -> None:
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    reply = http.post(f"/v1/collections/{watchlist}/search", key=make_key("app"),
                      json_body={"policy": "watchlist_search", "image": b64(probe)})
    assert reply.status == 200
    assert reply.json()["decision"]["outcome"] == "pending_review"
    assert reply.json()["FaceMatches"] == []


def test_a_collection_binds_what_its_creator_names_and_otherwise_the_default(
        http: Http, make_key: KeyFactory) -> None:
    operator = make_key("operator")
    named = http.post("/v1/collections", key=operator, json_body={
        "collection_id": "named", "policies": ["watchlist_search", "identity_check"]})
    assert named.status == 201
    plain = http.post("/v1/collections", key=operator, json_body={"collection_id": "plain"})
    assert plain.status == 201
    assert http.get("/v1/collections/named", key=operator).json()["Policies"] == [
        "identity_check", "watchlist_search"]
    assert http.get("/v1/collections/plain", key=operator).json()["Policies"] == [
        "login", "photo_tagging"]


@pytest.mark.parametrize("policies", [["no_such_policy"], ["dataset_cleaning"], []])
def test_a_binding_to_an_unknown_or_compare_policy_or_to_nothing_is_refused(
        http: Http, make_key: KeyFactory, policies: list[str]) -> None:
    reply = http.post("/v1/collections", key=make_key("operator"),
                      json_body={"collection_id": "bad", "policies": policies})
    assert reply.status == 422
    assert http.get("/v1/collections/bad", key=make_key("operator")).status == 404


@pytest.mark.parametrize(("role", "scope"), [
    ("operator", {}),
    ("admin", {"collections": ["watch"]}),
    ("admin", {"policies": ["photo_tagging"]}),
])
def test_only_an_unscoped_admin_may_rebind_a_collection(
        app: Flask, http: Http, make_key: KeyFactory, watchlist: str, role: str, *,
        scope: dict[str, list[str]]) -> None:
    reply = http.request("PUT", f"/v1/collections/{watchlist}/policies",
                         key=make_key(role, **scope),
                         json_body={"policies": ["photo_tagging"]})
    assert reply.status == 403
    assert audit_rows(app, "collection.policies") == []
    assert audit_rows(app, "authz.deny")[-1]["request_id"] == reply.headers["X-Request-ID"]


def test_an_unscoped_admin_rebinds_a_collection_and_the_change_is_audited(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        watchlist: str) -> None:
    reply = http.request("PUT", f"/v1/collections/{watchlist}/policies", key=make_key("admin"),
                         json_body={"policies": ["photo_tagging", "watchlist_search"]})
    assert reply.status == 200
    assert reply.json()["Policies"] == ["photo_tagging", "watchlist_search"]
    [event] = audit_rows(app, "collection.policies")
    assert event["details"]["old_policies"] == ["watchlist_search"]
    assert event["details"]["new_policies"] == ["photo_tagging", "watchlist_search"]
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    search = http.post(f"/v1/collections/{watchlist}/search", key=make_key("app"),
                       json_body={"policy": "photo_tagging", "image": b64(probe)})
    assert search.status == 200
    assert search.json()["decision"]["outcome"] == "match"


# --- the Rekognition-compatible endpoint ---------------------------------------------

def test_the_emulator_creates_a_collection_bound_by_its_tag(
        app: Flask, live: LiveServer) -> None:
    client = rekognition_client(live.url, api_key(app, "operator"))
    client.create_collection(CollectionId="tagged",
                             Tags={"faceapi:policies": "watchlist_search",
                                   "faceapi:consent_required": "false"})
    with app.extensions["faceapi"].store.read_uow() as uow:
        collection = uow.collections.get("tagged")
    assert collection is not None
    assert collection.policies == ("watchlist_search",)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.create_collection(CollectionId="tagged2",
                                 Tags={"faceapi:policies": "dataset_cleaning"})
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"


def test_emulator_searches_of_a_consequential_collection_return_no_candidate_and_wait(
        app: Flask, live: LiveServer, fake_engine: FakeEngine, watchlist: str) -> None:
    second = enroll(app, watchlist, "alice", vector_at(ALICE, 98.0, seed=5))
    client = rekognition_client(live.url, api_key(app, "operator"))
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    by_image = client.search_faces_by_image(CollectionId=watchlist, Image={"Bytes": probe},
                                            FaceMatchThreshold=0.0)
    by_face = client.search_faces(CollectionId=watchlist, FaceId=second,
                                  FaceMatchThreshold=0.0)
    for answer in (by_image, by_face):
        assert answer["FaceMatches"] == []
        decision_id = answer["ResponseMetadata"]["HTTPHeaders"]["x-faceapi-decision-id"]
        stored = stored_decision(app, decision_id)
        assert stored is not None
        assert stored["outcome"] == "pending_review"
        assert stored["policy_name"] == "watchlist_search"
    assert review_count(app) == 2
    decided = audit_rows(app, "search.decision")
    assert [e["outcome"] for e in decided] == ["pending_review", "pending_review"]
    assert all(e["request_id"] for e in decided)


def test_an_emulator_search_of_a_collection_bound_to_no_search_policy_is_refused(
        app: Flask, live: LiveServer, fake_engine: FakeEngine) -> None:
    make_collection(app, "door", ("login",))
    face_id = enroll(app, "door", "alice", ALICE)
    client = rekognition_client(live.url, api_key(app, "operator"))
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    with pytest.raises(botocore.exceptions.ClientError) as by_image:
        client.search_faces_by_image(CollectionId="door", Image={"Bytes": probe})
    with pytest.raises(botocore.exceptions.ClientError) as by_face:
        client.search_faces(CollectionId="door", FaceId=face_id)
    for refused in (by_image, by_face):
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert len(refusals(app)) == 2
    assert decision_count(app) == 0
