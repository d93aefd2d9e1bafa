"""Enrollment warnings over REST with the real local engine, on tests/data photos: the
operator is told when a face makes a poor template (services/enrollment_checks.py), and
a login under `login` scores a subject's enrolled faces as one fused template."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from faceapi.domain.audit import Actor
from faceapi.entrypoints.cli.imports import Importer, import_items, plan
from faceapi.entrypoints.web.emulator.operations import CONSENT_TAG
from tests.conftest import REPO
from tests.emulator_server import api_key, local_engine_app, rekognition_client, serve

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


def test_an_emulator_enrollment_is_checked_and_audited_in_rekognitions_shape(
        app: Flask) -> None:
    """boto3's IndexFaces answer has no field for warnings; the check still runs and
    its codes are in the enrollment's audit event."""
    server = serve(app)
    try:
        rekognition = rekognition_client(server.url, api_key(app, "operator"))
        rekognition.create_collection(CollectionId="emu", Tags={CONSENT_TAG: "false"})
        for photo in (JENNIFER, ANGELINA):
            answer = rekognition.index_faces(CollectionId="emu", ExternalImageId="jen",
                                             Image={"Bytes": photo.read_bytes()})
            assert len(answer["FaceRecords"]) == 1
            assert "Warnings" not in answer
    finally:
        server.stop()
    with app.extensions["faceapi"].store.engine.connect() as conn:
        rows = list(conn.execute(
            select(audit_events.c.details).where(audit_events.c.action == "face.index")
            .order_by(audit_events.c.seq.desc()).limit(2)))
    latest, first = (json.loads(r.details) if isinstance(r.details, str) else r.details
                     for r in rows)
    assert latest["template_warnings"] == ["inconsistent_with_subject"]
    assert "template_warnings" not in first


def test_a_bulk_import_reports_the_warning_in_its_report(app: Flask, tmp_path: Path) -> None:
    reply = app.test_client().post(
        "/v1/collections", json={"collection_id": "bulk", "policies": ["login"],
                                 "consent_required": False},
        headers={"Authorization": f"Bearer {api_key(app, 'operator').bearer}"})
    assert reply.status_code == 201, reply.get_json()
    folder = tmp_path / "people" / "jen"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(JENNIFER.read_bytes())
    (folder / "b.jpg").write_bytes(ANGELINA.read_bytes())
    importer = Importer(collection_id="bulk", actor=Actor.system("import"),
                        use_cases=app.extensions["faceapi"].use_cases,
                        max_image_bytes=1 << 22)
    report_path = tmp_path / "report.csv"
    with report_path.open("w", newline="", encoding="utf-8") as report:
        import_items(plan(tmp_path / "people", subject_from="folder"), importer, report)
    with report_path.open(newline="", encoding="utf-8") as report:
        rows = {r["file"]: r for r in csv.DictReader(report)}
    assert (rows["jen/a.jpg"]["status"], rows["jen/a.jpg"]["reason"]) == ("indexed", "")
    assert rows["jen/b.jpg"]["status"] == "indexed"
    assert rows["jen/b.jpg"]["reason"].startswith("inconsistent_with_subject:")
