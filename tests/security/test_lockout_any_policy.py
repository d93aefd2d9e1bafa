"""Findings 1 and 2 (issue 12): lockout is a property of the subject, and every verify
policy locks.

Attack: while a subject was locked under `login` (423), the same app key found it by a
`photo_tagging` search (match, similarity 85.9); `identity_check` had no lockout, so an
app could probe a subject without limit. Now a locked subject is not verifiable under
any policy and not returned by any search (REST or emulator) until the lock ends, and
identity_check locks after its failures like login.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.conftest import KeyFactory
from tests.emulator_server import LiveServer, api_key, rekognition_client
from tests.fakes import FakeClock, FakeEngine
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.integration.verify_support import b64, enroll, make_collection, scripted, vector_at
from tests.security.conftest import Http
from tests.security.support import ALICE, BOB, audit_rows, settings  # noqa: F401 (the --db backend)

LOGIN_FAILURES = 5  # policies/login.yaml and identity_check.yaml: lockout.failures


@pytest.fixture
def door(app: Flask) -> dict[str, str]:
    """A collection open to login, identity_check and photo_tagging, with alice (two
    faces) and bob; returns alice's face ids."""
    make_collection(app, "door", ("identity_check", "login", "photo_tagging"))
    first = enroll(app, "door", "alice", ALICE)
    second = enroll(app, "door", "alice", vector_at(ALICE, 97.0, seed=5))
    enroll(app, "door", "bob", BOB)
    return {"first": first, "second": second}


def verify(http: Http, key: str, engine: FakeEngine, policy: str,
           similarity: float) -> tuple[int, dict[str, Any]]:
    probe = scripted(engine, [vector_at(ALICE, similarity)])
    reply = http.post("/v1/verify", key=key, json_body={
        "collection_id": "door", "subject_id": "alice", "policy": policy,
        "image": b64(probe)})
    return reply.status, reply.json()


def lock_alice_under_login(http: Http, key: str, engine: FakeEngine) -> None:
    for _ in range(LOGIN_FAILURES):
        status, body = verify(http, key, engine, "login", 10.0)
        assert (status, body["outcome"]) == (200, "no_match")
    status, body = verify(http, key, engine, "login", 99.0)
    assert status == 423


def rest_search(http: Http, key: str, engine: FakeEngine) -> dict[str, Any]:
    probe = scripted(engine, [vector_at(ALICE, 99.0)])
    reply = http.post("/v1/collections/door/search", key=key,
                      json_body={"policy": "photo_tagging", "image": b64(probe)})
    assert reply.status == 200
    body: dict[str, Any] = reply.json()
    return body


def test_a_subject_locked_under_login_is_not_verifiable_under_identity_check(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        door: dict[str, str]) -> None:
    key = make_key("app")
    lock_alice_under_login(http, key, fake_engine)
    status, body = verify(http, key, fake_engine, "identity_check", 99.0)
    assert status == 423
    assert body["error"]["code"] == "locked"
    refused = [e for e in audit_rows(app, "verify.decision") if e["reason"] == "locked"]
    assert [e["policy_name"] for e in refused] == ["login", "identity_check"]


def test_a_subject_locked_under_login_is_not_found_by_any_search_until_it_unlocks(
        app: Flask, http: Http, live: LiveServer, make_key: KeyFactory,
        fake_engine: FakeEngine, *, clock: FakeClock, door: dict[str, str]) -> None:
    key = make_key("app")
    emulator = rekognition_client(live.url, api_key(app, "operator"))
    lock_alice_under_login(http, key, fake_engine)

    rest = rest_search(http, key, fake_engine)
    assert rest["FaceMatches"] == []
    assert rest["decision"]["outcome"] == "no_match"
    probe = scripted(fake_engine, [vector_at(ALICE, 99.0)])
    by_image = emulator.search_faces_by_image(CollectionId="door", Image={"Bytes": probe},
                                              FaceMatchThreshold=0.0)
    by_face = emulator.search_faces(CollectionId="door", FaceId=door["first"],
                                    FaceMatchThreshold=0.0)
    for answer in (by_image, by_face):
        assert "alice" not in {m["Face"].get("ExternalImageId") for m in answer["FaceMatches"]}

    clock.advance(seconds=61)  # the first lock lasts base_delay_seconds (60)
    assert rest_search(http, key, fake_engine)["FaceMatches"][0]["Face"][
        "ExternalImageId"] == "alice"
    again = emulator.search_faces(CollectionId="door", FaceId=door["first"])
    assert [m["Face"]["FaceId"] for m in again["FaceMatches"]] == [door["second"]]


def test_identity_check_locks_after_its_failures_though_each_waits_for_review(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        door: dict[str, str]) -> None:
    key = make_key("app")
    # High scores too: a pending answer must spend the budget, or the probing is free.
    for similarity in (99.0, 10.0, 99.0, 10.0, 99.0)[:LOGIN_FAILURES]:
        status, body = verify(http, key, fake_engine, "identity_check", similarity)
        assert (status, body["outcome"]) == (200, "pending_review")
    status, body = verify(http, key, fake_engine, "identity_check", 99.0)
    assert status == 423
    assert body["error"]["code"] == "locked"
    assert [e["policy_name"] for e in audit_rows(app, "lockout.lock")] == ["identity_check"]
    # The lock is the subject's: login refuses it too.
    assert verify(http, key, fake_engine, "login", 99.0)[0] == 423


def test_a_verify_policy_without_a_lockout_is_refused_when_policies_load(
        tmp_path: Any) -> None:
    from faceapi.adapters.policy_files import parse_policy
    from faceapi.domain.policies import PolicyError

    text = """
name: probe
description: verify without a lockout
operation: verify
consequential: true
min_similarity: 80
human_review: {mode: always}
"""
    with pytest.raises(PolicyError, match="lockout"):
        parse_policy(text, "probe.yaml", "probe")
