"""Enrollment warnings over REST with the real local engine, on tests/data photos: the
operator is told when a face makes a poor template (services/enrollment_checks.py), and
a login under `login` scores a subject's enrolled faces as one fused template."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import REPO
from tests.emulator_server import api_key, local_engine_app

DATASET = REPO / "tests" / "data" / "faces" / "deepface" / "tests" / "unit" / "dataset"
JENNIFER, JENNIFER_FAR = DATASET / "img12.jpg", DATASET / "img55.jpg"  # 64 apart
ANGELINA = DATASET / "img6.jpg"
AMY = REPO / "tests" / "data" / "faces" / "face-api.js" / "examples" / "images" / "amy"
IVAN = REPO / "tests" / "data" / "faces" / "mtcnn" / "tests" / "images" / "ivan.jpg"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return local_engine_app(tmp_path_factory.mktemp("enroll-warnings"))


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    operator = {"Authorization": f"Bearer {api_key(app, 'operator').bearer}"}
    reply = client.post("/v1/collections", headers=operator, json={
        "collection_id": "staff", "policies": ["login", "identity_check"]})
    assert reply.status_code == 201, reply.get_json()
    client.environ_base["HTTP_AUTHORIZATION"] = operator["Authorization"]
    return client


def enroll(client: FlaskClient, subject: str, photo: Path) -> dict[str, Any]:
    reply = client.post("/v1/collections/staff/faces", json={
        "image": {"bytes": base64.b64encode(photo.read_bytes()).decode()},
        "subject_id": subject, "consent": {"basis": "explicit_consent", "reference": "form-1"}})
    assert reply.status_code == 200, reply.get_json()
    body: dict[str, Any] = reply.get_json()
    assert len(body["FaceRecords"]) == 1  # a warning never refuses the enrollment
    return body


def test_a_second_persons_photo_enrolled_under_a_subject_is_flagged(client: FlaskClient) -> None:
    assert "Warnings" not in enroll(client, "jen", JENNIFER)
    [warning] = enroll(client, "jen", ANGELINA)["Warnings"]
    assert warning.startswith("inconsistent_with_subject: the new face scores ")


def test_the_same_persons_far_apart_photos_are_flagged_too(client: FlaskClient) -> None:
    """img12 and img55 are the same actress years apart (similarity 64): logins of one
    against the other fail, which the operator should hear at enrollment."""
    assert "Warnings" not in enroll(client, "jennifer", JENNIFER)
    [warning] = enroll(client, "jennifer", JENNIFER_FAR)["Warnings"]
    assert "inconsistent_with_subject" in warning


def test_two_close_photos_of_one_person_give_no_warning(client: FlaskClient) -> None:
    assert "Warnings" not in enroll(client, "amy", AMY / "amy1.png")
    assert "Warnings" not in enroll(client, "amy", AMY / "amy2.png")


def test_a_face_too_small_for_login_is_flagged_as_a_poor_template(client: FlaskClient) -> None:
    warnings = enroll(client, "ivan", IVAN)["Warnings"]  # a 53 px face; login wants 80
    assert all(w.startswith("poor_template:") for w in warnings)
    [for_login] = [w for w in warnings if "policy 'login'" in w]
    assert "small_face" in for_login


def test_the_warning_is_in_the_enrollments_audit_event_without_biometric_data(
        app: Flask, client: FlaskClient) -> None:
    body = enroll(client, "jen2", JENNIFER)
    body = enroll(client, "jen2", ANGELINA)
    auditor = {"Authorization": f"Bearer {api_key(app, 'auditor').bearer}"}
    reply = client.get(f"/v1/audit/events/{body['AuditEventId']}", headers=auditor)
    assert reply.status_code == 200, reply.get_json()
    event = reply.get_json()
    text = str(event)
    assert "inconsistent_with_subject" in text
    assert "subject_similarity" in text
    assert base64.b64encode(ANGELINA.read_bytes()[:48]).decode()[:40] not in text
