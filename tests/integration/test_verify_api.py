"""POST /v1/verify and GET /v1/decisions/{id} through HTTP on the real store."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from tests.conftest import HeadersFactory
from tests.fakes import FakeEngine, unit_vector
from tests.integration.verify_support import (
    b64,
    enroll,
    make_collection,
    row_counts,
    scripted,
    vector_at,
)

ENROLLED = unit_vector(1)


@pytest.fixture
def login_threshold(app: Flask) -> float:
    return float(app.extensions["faceapi"].policies["login"].min_similarity)


@pytest.fixture(autouse=True)
def people(app: Flask) -> str:
    make_collection(app, "staff")
    enroll(app, "staff", "alice", ENROLLED)
    return "staff"


def verify_body(image: bytes, subject: str = "alice", policy: str = "login",
                collection: str = "staff") -> dict[str, object]:
    return {"collection_id": collection, "subject_id": subject, "policy": policy,
            "image": b64(image)}


def test_a_login_verify_of_the_enrolled_subject_is_a_final_match(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory, login_threshold: float) -> None:
    probe = scripted(fake_engine, [vector_at(ENROLLED, login_threshold + 5)])
    response = client.post("/v1/verify", json=verify_body(probe), headers=auth_headers("app"))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["outcome"] == "match"
    assert body["final"] is True
    assert body["similarity"] == pytest.approx(login_threshold + 5, abs=0.01)
    assert body["threshold"] == login_threshold
    assert body["policy"]["name"] == "login"
    assert len(body["policy"]["version"]) == 64
    assert body["audit_event_id"]
    assert body["review_id"] is None


def test_a_login_verify_below_the_threshold_is_no_match_and_hides_the_score(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory, login_threshold: float) -> None:
    probe = scripted(fake_engine, [vector_at(ENROLLED, login_threshold - 5)])
    body = client.post("/v1/verify", json=verify_body(probe),
                       headers=auth_headers("app")).get_json()
    assert body["outcome"] == "no_match"
    assert body["similarity"] is None
    assert body["reasons"] == ["similarity_below_threshold"]


def test_an_unknown_subject_answers_exactly_like_a_no_match(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [vector_at(ENROLLED, 10)])
    known = client.post("/v1/verify", json=verify_body(probe), headers=auth_headers("app"))
    unknown = client.post("/v1/verify", json=verify_body(probe, subject="nobody"),
                          headers=auth_headers("app"))
    assert known.status_code == unknown.status_code == 200
    a, b = known.get_json(), unknown.get_json()
    varying = {"decision_id", "audit_event_id", "subject_id", "created_at", "decided_at"}
    assert {k: v for k, v in a.items() if k not in varying} == \
        {k: v for k, v in b.items() if k not in varying}


@pytest.mark.parametrize(("faces", "reason"), [(0, "no_face"), (2, "multiple_faces")])
def test_a_probe_without_exactly_one_face_is_rejected_with_the_reason(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory, faces: int, reason: str) -> None:
    probe = scripted(fake_engine, [ENROLLED] * faces)
    body = client.post("/v1/verify", json=verify_body(probe),
                       headers=auth_headers("app")).get_json()
    assert body["outcome"] == "rejected"
    assert body["reasons"] == [reason]


def test_a_poor_probe_face_is_rejected_for_quality(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [ENROLLED], yaw=80.0)
    body = client.post("/v1/verify", json=verify_body(probe),
                       headers=auth_headers("app")).get_json()
    assert body["outcome"] == "rejected"
    assert "extreme_pose" in body["reasons"]


def test_an_unknown_collection_is_404(client: FlaskClient, fake_engine: FakeEngine,
                                       auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [ENROLLED])
    response = client.post("/v1/verify", json=verify_body(probe, collection="nope"),
                           headers=auth_headers("app"))
    assert response.status_code == 404


def test_an_unknown_policy_is_422_unknown_policy(client: FlaskClient, fake_engine: FakeEngine,
                                                 auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [ENROLLED])
    response = client.post("/v1/verify", json=verify_body(probe, policy="lenient"),
                           headers=auth_headers("app"))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "unknown_policy"


def test_a_search_policy_cannot_be_used_to_verify(client: FlaskClient,
                                                  fake_engine: FakeEngine,
                                                  auth_headers: HeadersFactory) -> None:
    probe = scripted(fake_engine, [ENROLLED])
    response = client.post("/v1/verify", json=verify_body(probe, policy="photo_tagging"),
                           headers=auth_headers("app"))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "wrong_policy_operation"


@pytest.mark.parametrize(("image", "expected"), [
    (b"GIF89a-not-allowed", (415, "unsupported_image_format")),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, (422, "invalid_image")),
])
def test_a_bad_image_gets_the_intake_code_and_writes_nothing(
        client: FlaskClient, app: Flask, auth_headers: HeadersFactory,
        image: bytes, expected: tuple[int, str]) -> None:
    status, code = expected
    headers = auth_headers("app")
    before = row_counts(app)
    response = client.post("/v1/verify", json=verify_body(image), headers=headers)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert row_counts(app) == before


def test_a_missing_image_is_422(client: FlaskClient,
                                auth_headers: HeadersFactory) -> None:
    body = {"collection_id": "staff", "subject_id": "alice", "policy": "login"}
    response = client.post("/v1/verify", json=body, headers=auth_headers("app"))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "missing_image"


def test_verify_accepts_a_multipart_upload(client: FlaskClient, fake_engine: FakeEngine,
                                            auth_headers: HeadersFactory,
                                           login_threshold: float) -> None:

    probe = scripted(fake_engine, [vector_at(ENROLLED, login_threshold + 10)])
    response = client.post("/v1/verify", data={
        "collection_id": "staff", "subject_id": "alice", "policy": "login",
        "image": (io.BytesIO(probe), "selfie.png")}, headers=auth_headers("app"),
        content_type="multipart/form-data")
    assert response.get_json()["outcome"] == "match"


def test_the_decision_and_its_audit_event_carry_digests_but_no_biometric_data(
        client: FlaskClient, app: Flask, fake_engine: FakeEngine,
        auth_headers: HeadersFactory, login_threshold: float) -> None:
    probe = scripted(fake_engine, [vector_at(ENROLLED, login_threshold + 5)])
    body = client.post("/v1/verify", json=verify_body(probe),
                       headers=auth_headers("app")).get_json()
    with app.extensions["faceapi"].store.engine.connect() as conn:
        row = conn.execute(select(audit_events).where(
            audit_events.c.id == body["audit_event_id"])).one()
    assert row.action == "verify.decision"
    assert row.outcome == "match"
    assert row.policy_name == "login"
    assert json.loads(row.input_digests)[0] == hashlib.sha256(probe).hexdigest()
    everything = " ".join(str(v) for v in row)
    assert b64(probe)["bytes"][:40] not in everything
    assert len(json.loads(row.scores)) < 16


def test_an_app_reads_back_its_own_decision_and_not_another_apps(
        client: FlaskClient, fake_engine: FakeEngine,
        auth_headers: HeadersFactory, login_threshold: float) -> None:
    probe = scripted(fake_engine, [vector_at(ENROLLED, login_threshold + 5)])
    decision = client.post("/v1/verify", json=verify_body(probe),
                           headers=auth_headers("app")).get_json()
    own = client.get(f"/v1/decisions/{decision['decision_id']}", headers=auth_headers("app"))
    assert own.status_code == 200
    assert own.get_json()["outcome"] == "match"
    other = client.get(f"/v1/decisions/{decision['decision_id']}",
                       headers=auth_headers("app", name="other app"))
    assert other.status_code == 404
    assert client.get(f"/v1/decisions/{decision['decision_id']}",
                      headers=auth_headers("auditor")).status_code == 200




def test_verify_logs_carry_no_image_or_descriptor(
        client: FlaskClient, fake_engine: FakeEngine, auth_headers: HeadersFactory,
        login_threshold: float) -> None:
    from structlog.testing import capture_logs

    probe = scripted(fake_engine, [vector_at(ENROLLED, login_threshold + 5)])
    headers = auth_headers("app")
    with capture_logs() as logs:
        client.post("/v1/verify", json=verify_body(probe), headers=headers)
        client.post("/v1/verify", json=verify_body(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
                    headers=headers)
    text = json.dumps(logs, default=str)
    assert logs
    assert b64(probe)["bytes"][:24] not in text
    assert "embedding" not in text
    assert f"{ENROLLED[0]:.6f}"[:8] not in text
