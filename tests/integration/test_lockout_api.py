"""Lockout of failed verifies (NIST SP 800-63B throttling) through HTTP, in process."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from tests.conftest import HeadersFactory
from tests.fakes import FakeClock, FakeEngine, unit_vector
from tests.integration.verify_support import b64, enroll, make_collection, scripted, vector_at

ALICE = unit_vector(1)


@pytest.fixture(autouse=True)
def people(app: Flask) -> str:
    make_collection(app, "staff")
    enroll(app, "staff", "alice", ALICE)
    return "staff"


def attempt(client: FlaskClient, engine: FakeEngine, headers: dict[str, str],
            similarity: float, subject: str = "alice") -> tuple[int, dict[str, Any], str]:
    probe = scripted(engine, [vector_at(ALICE, similarity)])
    response = client.post("/v1/verify", headers=headers, json={
        "collection_id": "staff", "subject_id": subject, "policy": "login",
        "image": b64(probe)})
    return response.status_code, response.get_json(), response.headers.get("Retry-After", "")


def actions(app: Flask) -> list[str]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return [r.action for r in conn.execute(
            select(audit_events.c.action).order_by(audit_events.c.seq))]


def test_five_failures_lock_and_the_sixth_attempt_gets_423_with_retry_after(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    for _ in range(5):
        status, body, _ = attempt(client, fake_engine, headers, 5.0)
        assert status == 200
        assert body["outcome"] == "no_match"
    status, body, retry_after = attempt(client, fake_engine, headers, 99.0)
    assert status == 423
    assert body["error"]["code"] == "locked"
    assert 59 <= int(retry_after) <= 60  # the rate limiter re-renders it, rounding down
    assert actions(app).count("lockout.lock") == 1


def test_a_match_resets_the_count(client: FlaskClient, fake_engine: FakeEngine,
                                  auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    for _ in range(4):
        attempt(client, fake_engine, headers, 5.0)
    assert attempt(client, fake_engine, headers, 99.0)[1]["outcome"] == "match"
    for _ in range(4):
        assert attempt(client, fake_engine, headers, 5.0)[0] == 200
    assert attempt(client, fake_engine, headers, 99.0)[1]["outcome"] == "match"


def test_an_unknown_subject_locks_like_a_known_one(client: FlaskClient,
                                                   fake_engine: FakeEngine,
                                                   auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    for _ in range(5):
        attempt(client, fake_engine, headers, 5.0, subject="mallory")
    assert attempt(client, fake_engine, headers, 5.0, subject="mallory")[0] == 423
    # Another subject is not affected.
    assert attempt(client, fake_engine, headers, 99.0)[0] == 200


def test_delays_grow_after_each_lock(client: FlaskClient, fake_engine: FakeEngine,
                                     clock: FakeClock,
                                     auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    for _ in range(5):
        attempt(client, fake_engine, headers, 5.0)
    clock.advance(seconds=61)
    assert attempt(client, fake_engine, headers, 5.0)[0] == 200  # fails, locks again
    status, _, retry_after = attempt(client, fake_engine, headers, 99.0)
    assert status == 423
    assert 119 <= int(retry_after) <= 120


def test_an_operator_unlocks_a_subject_and_it_is_audited(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    for _ in range(5):
        attempt(client, fake_engine, headers, 5.0)
    operator = auth_headers("operator")
    state = client.get("/v1/collections/staff/subjects/alice/lockout", headers=operator)
    assert state.status_code == 200
    assert state.get_json()["lockouts"][0]["retry_after"] == 60
    assert client.delete("/v1/collections/staff/subjects/alice/lockout",
                         headers=headers).status_code == 403
    unlocked = client.delete("/v1/collections/staff/subjects/alice/lockout?policy=login",
                             headers=operator)
    assert unlocked.status_code == 200
    assert unlocked.get_json() == {"unlocked": 1}
    assert attempt(client, fake_engine, headers, 99.0)[1]["outcome"] == "match"
    assert "lockout.unlock" in actions(app)


def test_a_locked_attempt_is_audited_without_a_decision(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    headers = auth_headers("app")
    for _ in range(6):
        attempt(client, fake_engine, headers, 5.0)
    with app.extensions["faceapi"].store.engine.connect() as conn:
        last = conn.execute(select(audit_events).order_by(audit_events.c.seq.desc())).first()
    assert last is not None
    assert last.action == "verify.decision"
    assert last.reason == "locked"


def test_lockout_routes_404_on_an_unknown_collection_or_state_and_422_on_a_bad_policy(
        client: FlaskClient, app: Flask, auth_headers: HeadersFactory) -> None:
    operator = auth_headers("operator")
    before = actions(app)
    assert client.get("/v1/collections/nope/subjects/alice/lockout",
                      headers=operator).status_code == 404
    for path in ("/v1/collections/nope/subjects/alice/lockout",
                 "/v1/collections/staff/subjects/alice/lockout",
                 "/v1/collections/staff/subjects/alice/lockout?policy=login"):
        response = client.delete(path, headers=operator)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    bad = client.delete("/v1/collections/staff/subjects/alice/lockout?policy=",
                        headers=operator)
    assert bad.status_code == 422
    assert bad.get_json()["error"]["code"] == "validation_error"
    assert actions(app) == before
