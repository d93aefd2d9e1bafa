"""Finding 3: the two-person rule counted keys, not people. One person holding two
reviewer keys cast both votes of a watchlist_search review, and a scoped admin could
mint those keys itself. Through a real HTTP server: reviewers are counted by owner,
a reviewer owned by the requester's owner cannot decide, and each refusal is audited."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from tests.conftest import KeyFactory
from tests.fakes import FakeEngine, unit_vector
from tests.integration.verify_support import b64, enroll, scripted, vector_at
from tests.security.conftest import Http, Reply

ALICE = unit_vector(1)
WATCH = "watch"


def key_id(key: str) -> str:
    return key.split("_")[1]


def denials(app: Flask, reason: str) -> list[dict[str, Any]]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(audit_events).where(audit_events.c.action == "authz.deny",
                                       audit_events.c.reason == reason)
            .order_by(audit_events.c.seq))]


@pytest.fixture
def watchlist(app: Flask, http: Http, make_key: KeyFactory) -> str:
    """A collection bound to watchlist_search (two reviewers), with alice enrolled."""
    created = http.post("/v1/collections", key=make_key("operator"), json_body={
        "collection_id": WATCH, "consent_required": False, "policies": ["watchlist_search"]})
    assert created.status == 201, created.body[:300]
    enroll(app, WATCH, "alice", ALICE)
    return WATCH


def pending_search(http: Http, engine: FakeEngine, app_key: str) -> dict[str, Any]:
    """A watchlist_search with a strong candidate: its decision (pending review)."""
    probe = scripted(engine, [vector_at(ALICE, 99.0)])
    reply = http.post(f"/v1/collections/{WATCH}/search", key=app_key, json_body={
        "policy": "watchlist_search", "image": b64(probe)})
    assert reply.status == 200, reply.body[:300]
    decision: dict[str, Any] = reply.json()["decision"]
    assert decision["outcome"] == "pending_review"
    return decision


def vote(http: Http, review_id: str, key: str) -> tuple[int, dict[str, Any]]:
    reply = http.post(f"/v1/reviews/{review_id}/decision", key=key,
                      json_body={"decision": "confirm", "reason": "same person"})
    return reply.status, reply.json()


def outcome(http: Http, decision_id: str, key: str) -> str:
    return str(http.get(f"/v1/decisions/{decision_id}", key=key).json()["outcome"])


def test_two_reviewer_keys_of_one_owner_cannot_pass_the_two_person_rule(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        watchlist: str) -> None:
    app_key = make_key("app", owner="system:gate")
    mine = make_key("reviewer", owner="mallory@example.org")
    # The same person, spelled differently: owners compare in lower case.
    also_mine = make_key("reviewer", owner="Mallory@Example.org")
    decision = pending_search(http, fake_engine, app_key)
    status, review = vote(http, decision["review_id"], mine)
    assert (status, review["status"]) == (200, "pending")
    status, error = vote(http, decision["review_id"], also_mine)
    assert status == 403
    assert error["error"]["code"] == "owner_already_voted"
    assert outcome(http, decision["decision_id"], app_key) == "pending_review"
    [denied] = denials(app, "owner_already_voted")
    assert denied["actor_key_id"] == key_id(also_mine)
    assert denied["resource"] == "endpoint/reviews.decide_review_item"
    # A second person completes it: the rule still lets two people decide.
    status, review = vote(http, decision["review_id"], make_key("reviewer",
                                                                owner="carol@example.org"))
    assert (status, review["status"]) == (200, "confirmed")
    assert outcome(http, decision["decision_id"], app_key) == "match"


def test_a_reviewer_owned_by_the_requesters_owner_cannot_decide(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        watchlist: str) -> None:
    app_key = make_key("app", owner="alice@example.org")
    own_reviewer = make_key("reviewer", owner="alice@example.org")
    decision = pending_search(http, fake_engine, app_key)
    status, error = vote(http, decision["review_id"], own_reviewer)
    assert status == 403
    assert error["error"]["code"] == "reviewer_is_requester"
    [denied] = denials(app, "reviewer_is_requester")
    assert denied["actor_key_id"] == key_id(own_reviewer)
    # Her vote did not count: two other people are still needed.
    for owner in ("bob@example.org", "carol@example.org"):
        assert outcome(http, decision["decision_id"], app_key) == "pending_review"
        status, _ = vote(http, decision["review_id"], make_key("reviewer", owner=owner))
        assert status == 200
    assert outcome(http, decision["decision_id"], app_key) == "match"


def test_a_collection_scoped_admin_cannot_mint_the_two_reviewers(
        app: Flask, http: Http, make_key: KeyFactory, watchlist: str) -> None:
    scoped_admin = make_key("admin", collections=[WATCH], owner="mallory@example.org")
    for n in (1, 2):
        minted = http.post("/v1/keys", key=scoped_admin, json_body={
            "name": f"reviewer {n}", "role": "reviewer", "owner": f"sock{n}@example.org",
            "collections": [WATCH], "policies": ["watchlist_search"]})
        assert minted.status == 403, minted.body[:300]
        assert "key" not in minted.json()
    assert len(denials(app, "forbidden_by_service")) == 2


def console_session(http: Http, key: str) -> tuple[str, str]:
    """Sign in to the console over the live server: (session cookie, CSRF token)."""
    def token(reply: Reply) -> str:
        match = re.search(rb'name="csrf_token" value="([^"]+)"', reply.body)
        assert match, reply.body[:300]
        return match.group(1).decode()

    page = http.get("/console/signin")
    cookie = (page.headers.get("Set-Cookie") or "").split(";", 1)[0]
    signed_in = http.post("/console/signin", body=urlencode(
        {"api_key": key, "csrf_token": token(page)}).encode(), headers={
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert signed_in.status == 302, signed_in.body[:300]
    cookie = (signed_in.headers.get("Set-Cookie") or cookie).split(";", 1)[0]
    return cookie, token(http.get("/console/reviews", headers={"Cookie": cookie}))


def test_the_console_counts_owners_too_and_audits_the_refusal(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        watchlist: str) -> None:
    app_key = make_key("app", owner="system:gate")
    decision = pending_search(http, fake_engine, app_key)
    assert vote(http, decision["review_id"], make_key("reviewer", owner="eve@example.org"))[0] \
        == 200
    cookie, csrf = console_session(http, make_key("reviewer", owner="eve@example.org"))
    http.post(f"/console/reviews/{decision['review_id']}/decision", body=urlencode({
        "csrf_token": csrf, "decision": "confirm", "reason": "same person"}).encode(),
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert outcome(http, decision["decision_id"], app_key) == "pending_review"
    [denied] = denials(app, "owner_already_voted")
    assert denied["resource"] == "endpoint/console.review_decide"
