"""Finding 2 (issue 12): nothing is learned from a pending decision.

Attack: a `pending_review` decision carried `similarity_at_or_above_threshold` or
`similarity_below_threshold`, so an app learned the answer before any reviewer looked.
Now, until a review ends, the requester sees only that review is required (the verify
or search answer and GET /v1/decisions/{id} alike); reviewers still see everything.
"""

from __future__ import annotations

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
from tests.security.support import ALICE, settings  # noqa: F401 (the --db backend)

# What differs between any two decisions whatever they decided.
PER_DECISION = {"decision_id", "review_id", "audit_event_id", "created_at"}
SCORE_HINTS = ("similarity_at_or_above_threshold", "similarity_below_threshold",
               "similarity_in_review_band")


@pytest.fixture(autouse=True)
def watch(app: Flask) -> None:
    make_collection(app, "watch", ("identity_check", "watchlist_search"))
    enroll(app, "watch", "alice", ALICE)


def identity_check(http: Http, key: str, engine: FakeEngine, similarity: float) -> Any:
    probe = scripted(engine, [vector_at(ALICE, similarity)])
    reply = http.post("/v1/verify", key=key, json_body={
        "collection_id": "watch", "subject_id": "alice", "policy": "identity_check",
        "image": b64(probe)})
    assert reply.status == 200
    return reply.json()


def watchlist(http: Http, key: str, engine: FakeEngine, similarity: float) -> Any:
    probe = scripted(engine, [vector_at(ALICE, similarity)])
    reply = http.post("/v1/collections/watch/search", key=key,
                      json_body={"policy": "watchlist_search", "image": b64(probe)})
    assert reply.status == 200
    return reply.json()


def shown(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decision.items() if k not in PER_DECISION}


def assert_reveals_nothing(decision: dict[str, Any]) -> None:
    assert decision["outcome"] == "pending_review"
    assert decision["reasons"] == ["review_required"]
    assert decision["similarity"] is None
    assert decision["matched_face_id"] is None
    assert not any(hint in str(decision) for hint in SCORE_HINTS)


def test_a_pending_verify_looks_the_same_far_above_and_far_below_the_threshold(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    key = make_key("app")
    high = identity_check(http, key, fake_engine, 99.0)
    low = identity_check(http, key, fake_engine, 5.0)
    assert shown(high) == shown(low)
    assert_reveals_nothing(high)
    for decision in (high, low):
        read = http.get(f"/v1/decisions/{decision['decision_id']}", key=key).json()
        assert shown(read) == shown(high)
        assert_reveals_nothing(read)


def test_a_pending_search_looks_the_same_with_and_without_a_candidate(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    key = make_key("app")
    high = watchlist(http, key, fake_engine, 99.0)
    low = watchlist(http, key, fake_engine, 5.0)
    assert high.keys() == low.keys()
    assert high["FaceMatches"] == low["FaceMatches"] == []
    assert shown(high["decision"]) == shown(low["decision"])
    assert_reveals_nothing(high["decision"])
    read = http.get(f"/v1/decisions/{high['decision']['decision_id']}", key=key).json()
    assert_reveals_nothing(read)
    assert b"alice" not in http.get(f"/v1/decisions/{high['decision']['decision_id']}",
                                    key=key).body


def test_reviewers_still_see_the_scores_and_the_app_sees_the_final_answer(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    app_key = make_key("app")
    decision = identity_check(http, app_key, fake_engine, 99.0)
    reviewer = make_key("reviewer", name="reviewer one")
    review = http.get(f"/v1/reviews/{decision['review_id']}", key=reviewer).json()
    assert review["candidates"][0]["similarity"] == pytest.approx(99.0, abs=0.01)
    for_reviewer = http.get(f"/v1/decisions/{decision['decision_id']}", key=reviewer).json()
    assert "similarity_at_or_above_threshold" in for_reviewer["reasons"]
    voted = http.post(f"/v1/reviews/{decision['review_id']}/decision", key=reviewer,
                      json_body={"decision": "confirm", "reason": "same person"})
    assert voted.status == 200
    final = http.get(f"/v1/decisions/{decision['decision_id']}", key=app_key).json()
    assert final["outcome"] == "match"
    assert final["similarity"] == pytest.approx(99.0, abs=0.01)
