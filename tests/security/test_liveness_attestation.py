"""Issue 17, item 3: a policy may require an external liveness service's signed
attestation. Every attack goes through the real HTTP server, on the `--db` backend.

Attack: face login accepted a printed photo as readily as a live face, and nothing
recorded whether liveness was checked. Now, under `login_liveness` (shipped) and a
search policy that requires liveness (this test's own), a decision without a valid
attestation (missing, expired, from the future, replayed, another issuer, another
subject, `alg: none`, HS256 signed with the public key, an attacker's key) is
`rejected` with `liveness_required` and a precise reason; every decision says whether
liveness was attested, in its row, at GET /v1/decisions/{id} and in its audit event.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from faceapi.config import Settings
from tests.conftest import KeyFactory
from tests.emulator_server import LiveServer, api_key, rekognition_client
from tests.fakes import FakeClock, FakeEngine
from tests.integration.conftest import (  # noqa: F401 (fixtures: --db=postgresql)
    database_url,
    db_backend,
    pg_database_url,
)
from tests.integration.verify_support import b64, enroll, make_collection, scripted, vector_at
from tests.liveness_tokens import (
    OTHER,
    TRUSTED,
    Issuers,
    hmac_with_public_key,
    jti_hash,
    mint,
    unsigned,
    write_issuers,
)
from tests.security.conftest import Http
from tests.security.support import ALICE, audit_rows, decision_count, stored_decision

SHIPPED = Path(__file__).resolve().parents[2] / "policies"
TAGGING_LIVE = """\
name: tagging_live
description: 1:N search of a live capture (this test's policy).
operation: search
consequential: false
min_similarity: 60.0
min_face_confidence: 80.0
human_review: {mode: never}
liveness: {required: true, issuers: [example-liveness]}
"""


@pytest.fixture
def issuers(tmp_path: Path) -> Issuers:
    return write_issuers(tmp_path / "issuers")


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest, tmp_path: Path,
             issuers: Issuers) -> Settings:
    """The shipped policies plus `tagging_live`, the two issuers, on the --db backend."""
    policies = tmp_path / "policies"
    shutil.copytree(SHIPPED, policies)
    (policies / "tagging_live.yaml").write_text(TAGGING_LIVE)
    return settings.with_overrides(database_url=request.getfixturevalue("database_url"),
                                   policies_dir=policies, liveness_issuers=issuers.file)


@pytest.fixture(autouse=True)
def door(app: Flask) -> str:
    make_collection(app, "door", ("login", "login_liveness", "tagging_live"))
    enroll(app, "door", "alice", ALICE)
    return "door"


def verify(http: Http, key: str, engine: FakeEngine, token: str | None, *,
           policy: str = "login_liveness", subject: str = "alice") -> dict[str, Any]:
    body: dict[str, Any] = {"collection_id": "door", "subject_id": subject,
                            "policy": policy,
                            "image": b64(scripted(engine, [vector_at(ALICE, 99.0)]))}
    if token is not None:
        body["liveness_attestation"] = token
    reply = http.post("/v1/verify", key=key, json_body=body)
    assert reply.status == 200, reply.body
    answer: dict[str, Any] = reply.json()
    return answer


def test_a_valid_attestation_is_recorded_in_the_decision_its_read_back_and_its_event(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        clock: FakeClock, *, issuers: Issuers) -> None:
    key = make_key("app")
    token = mint(issuers.trusted_key, sub="alice", at=clock.now(), age_s=30)
    decision = verify(http, key, fake_engine, token)
    assert decision["outcome"] == "match"
    assert decision["matched_subject_id"] == "alice"
    expected = {"status": "attested", "issuer": TRUSTED,
                "jti_sha256": jti_hash(TRUSTED, token)}
    assert decision["liveness"] == expected
    read = http.get(f"/v1/decisions/{decision['decision_id']}", key=key).json()
    assert read["liveness"] == expected
    row = stored_decision(app, decision["decision_id"])
    assert row is not None
    assert (row["liveness_status"], row["liveness_issuer"], row["liveness_jti_sha256"]) == (
        "attested", TRUSTED, expected["jti_sha256"])
    event = audit_rows(app, "verify.decision")[-1]
    assert event["details"]["liveness"] == "attested"
    assert event["details"]["liveness_jti_sha256"] == expected["jti_sha256"]
    # The token itself (and its signature) is stored nowhere.
    assert token.split(".")[2] not in json.dumps(audit_rows(app), default=str)
    assert token.split(".")[2] not in json.dumps(row, default=str)


def test_without_an_attestation_the_verify_is_rejected_and_locks_nobody(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        clock: FakeClock, *, issuers: Issuers) -> None:
    key = make_key("app")
    for _ in range(7):  # more than login_liveness's 5 failures
        decision = verify(http, key, fake_engine, None)
        assert decision["outcome"] == "rejected"
        assert decision["reasons"] == ["liveness_required", "liveness_missing"]
        assert decision["similarity"] is None
        assert decision["liveness"]["status"] == "failed"
    events = audit_rows(app, "verify.decision")
    assert [e["outcome"] for e in events] == ["rejected"] * 7
    assert all(e["details"]["liveness"] == "failed" for e in events)
    lockout = http.get("/v1/collections/door/subjects/alice/lockout",
                       key=make_key("operator")).json()
    assert all(s["failures"] == 0 and s["locked_until"] is None
               for s in lockout["lockouts"])
    valid = mint(issuers.trusted_key, sub="alice", at=clock.now())
    assert verify(http, key, fake_engine, valid)["outcome"] == "match"


def test_an_expired_or_future_attestation_is_rejected(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine, clock: FakeClock,
        *, issuers: Issuers) -> None:
    key = make_key("app")
    old = mint(issuers.trusted_key, sub="alice", at=clock.now(), age_s=200)
    ahead = mint(issuers.trusted_key, sub="alice", at=clock.now(), age_s=-60)
    past_exp = mint(issuers.trusted_key, sub="alice", at=clock.now(),
                    exp=int(clock.now().timestamp()) - 60)
    assert verify(http, key, fake_engine, old)["reasons"] == [
        "liveness_required", "liveness_expired"]
    assert verify(http, key, fake_engine, ahead)["reasons"] == [
        "liveness_required", "liveness_issued_in_future"]
    assert verify(http, key, fake_engine, past_exp)["reasons"][-1] == "liveness_expired"


def test_a_replayed_attestation_is_rejected_even_by_another_app(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        clock: FakeClock, *, issuers: Issuers) -> None:
    token = mint(issuers.trusted_key, sub="alice", at=clock.now())
    first = verify(http, make_key("app"), fake_engine, token)
    again = verify(http, make_key("app"), fake_engine, token)
    assert first["outcome"] == "match"
    assert again["outcome"] == "rejected"
    assert again["reasons"] == ["liveness_required", "liveness_replayed"]
    assert again["liveness"]["jti_sha256"] == first["liveness"]["jti_sha256"]
    event = audit_rows(app, "verify.decision")[-1]
    assert event["outcome"] == "rejected"
    assert event["details"]["liveness_jti_sha256"] == first["liveness"]["jti_sha256"]


def test_two_requests_racing_with_one_attestation_make_one_attested_decision(
        app: Flask, http: Http, make_key: KeyFactory, fake_engine: FakeEngine,
        clock: FakeClock, *, issuers: Issuers) -> None:
    key = make_key("app")
    token = mint(issuers.trusted_key, sub="alice", at=clock.now())
    answers: list[dict[str, Any]] = []
    start = threading.Barrier(4)

    def one() -> None:
        start.wait()
        answers.append(verify(http, key, fake_engine, token))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(a["outcome"] for a in answers) == ["match", "rejected", "rejected",
                                                      "rejected"]
    assert decision_count(app) == 4


def test_another_issuer_or_an_unknown_one_is_not_trusted(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine, clock: FakeClock,
        *, issuers: Issuers) -> None:
    key = make_key("app")
    # Configured, validly signed, but login_liveness does not name it.
    other = mint(issuers.other_key, sub="alice", at=clock.now(), iss=OTHER, alg="EdDSA",
                 headers={"kid": "k1"})
    unknown = mint(ec.generate_private_key(ec.SECP256R1()), sub="alice", at=clock.now(),
                   iss="https://liveness.attacker.example")
    for token in (other, unknown):
        decision = verify(http, key, fake_engine, token)
        assert decision["reasons"] == ["liveness_required", "liveness_untrusted_issuer"]


def test_an_attestation_for_another_subject_is_rejected(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine, clock: FakeClock,
        *, issuers: Issuers) -> None:
    # Bob passed a liveness check for his own account; he may not log in as alice.
    token = mint(issuers.trusted_key, sub="bob", at=clock.now())
    decision = verify(http, make_key("app"), fake_engine, token)
    assert decision["reasons"] == ["liveness_required", "liveness_wrong_subject"]


def test_forged_signatures_are_rejected(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine, clock: FakeClock,
        *, issuers: Issuers) -> None:
    key = make_key("app")
    forged = {
        "alg_none": unsigned(sub="alice", at=clock.now()),
        "hs256_with_the_public_key": hmac_with_public_key(issuers.trusted_public_pem,
                                                          sub="alice", at=clock.now()),
        "attackers_own_key": mint(ec.generate_private_key(ec.SECP256R1()), sub="alice",
                                  at=clock.now()),
        "garbage": "x.y.z",
    }
    for name, token in forged.items():
        decision = verify(http, key, fake_engine, token)
        assert decision["outcome"] == "rejected", name
        assert decision["reasons"] == ["liveness_required", "liveness_invalid"], name
    too_long = http.post("/v1/verify", key=key, json_body={
        "collection_id": "door", "subject_id": "alice", "policy": "login_liveness",
        "image": b64(scripted(fake_engine, [vector_at(ALICE, 99.0)])),
        "liveness_attestation": "a" * 9000})
    assert too_long.status == 422


def test_a_policy_without_liveness_records_not_required(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine) -> None:
    decision = verify(http, make_key("app"), fake_engine, None, policy="login")
    assert decision["outcome"] == "match"
    assert decision["liveness"] == {"status": "not_required", "issuer": None,
                                    "jti_sha256": None}


def test_a_search_under_a_liveness_policy_needs_a_search_attestation(
        http: Http, make_key: KeyFactory, fake_engine: FakeEngine, clock: FakeClock,
        *, issuers: Issuers) -> None:
    key = make_key("app")

    def search(token: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"policy": "tagging_live",
                                "image": b64(scripted(fake_engine, [vector_at(ALICE, 99.0)]))}
        if token is not None:
            body["liveness_attestation"] = token
        reply = http.post("/v1/collections/door/search", key=key, json_body=body)
        assert reply.status == 200, reply.body
        answer: dict[str, Any] = reply.json()
        return answer

    missing = search(None)
    assert missing["decision"]["reasons"] == ["liveness_required", "liveness_missing"]
    assert missing["FaceMatches"] == []
    # A verify token (sub = a subject id) is no search token, and vice versa.
    as_verify = search(mint(issuers.trusted_key, sub="alice", at=clock.now()))
    assert as_verify["decision"]["reasons"][-1] == "liveness_wrong_subject"
    other_collection = search(mint(issuers.trusted_key, sub="search:other", at=clock.now()))
    assert other_collection["decision"]["reasons"][-1] == "liveness_wrong_subject"
    valid = search(mint(issuers.trusted_key, sub="search:door", at=clock.now()))
    assert valid["decision"]["outcome"] == "match"
    assert valid["decision"]["liveness"]["status"] == "attested"
    assert valid["FaceMatches"][0]["Face"]["ExternalImageId"] == "alice"


def test_routes_that_cannot_carry_an_attestation_are_refused_and_audited(
        app: Flask, http: Http, live: LiveServer, make_key: KeyFactory,
        fake_engine: FakeEngine) -> None:
    make_collection(app, "live_only", ("tagging_live",))
    face_id = enroll(app, "live_only", "alice", ALICE)
    client = rekognition_client(live.url, api_key(app, "operator"))
    with pytest.raises(botocore.exceptions.ClientError) as by_image:
        client.search_faces_by_image(CollectionId="live_only", Image={
            "Bytes": scripted(fake_engine, [vector_at(ALICE, 99.0)])})
    with pytest.raises(botocore.exceptions.ClientError) as by_face:
        client.search_faces(CollectionId="live_only", FaceId=face_id)
    for refused in (by_image, by_face):
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "liveness" in refused.value.response["Error"]["Message"]
    rest = http.post(f"/v1/collections/live_only/faces/{face_id}/search",
                     key=make_key("app"), json_body={"policy": "tagging_live"})
    assert rest.status == 403
    assert rest.json()["error"]["code"] == "liveness_unsupported"
    refusals = [r for r in audit_rows(app, "authz.deny")
                if r["details"].get("refusal") == "liveness_unsupported"]
    assert len(refusals) == 3
    assert decision_count(app) == 0
