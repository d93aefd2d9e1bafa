"""Collections, IndexFaces, ListFaces, DeleteFaces, subjects and consent through HTTP on
the real store (SQLite or PostgreSQL), with the fake engine."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from faceapi.adapters.store.tables import audit_events, collections, consents, faces, subjects
from faceapi.domain.audit import Actor
from faceapi.services.collections import CreateCollectionRequest, create_collection
from tests.botocore_shapes import assert_conforms
from tests.conftest import HeadersFactory, solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector

CONSENT = {"basis": "explicit_consent", "reference": "form-2026-001"}
_images = iter(range(1, 10_000))


def new_image() -> bytes:
    n = next(_images)
    return solid_image(32, 32, color=(n % 251, (n // 251) % 251, 90))


def b64(data: bytes) -> dict[str, str]:
    return {"bytes": base64.b64encode(data).decode("ascii")}


def scripted(engine: FakeEngine, *details: Any, seed: int = 1) -> bytes:
    image = new_image()
    engine.script(image, [ScriptedFace(d, unit_vector(seed + i)) for i, d in enumerate(details)])
    return image


def row_counts(app: Flask) -> dict[str, int]:
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (collections, subjects, faces, consents, audit_events)}


def actions(app: Flask) -> list[str]:
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        return list(conn.execute(select(audit_events.c.action)
                                 .order_by(audit_events.c.seq)).scalars())


@pytest.fixture
def operator(auth_headers: HeadersFactory) -> dict[str, str]:
    return auth_headers("operator")


@pytest.fixture
def staff(client: FlaskClient, operator: dict[str, str]) -> str:
    response = client.post("/v1/collections", json={"collection_id": "staff"}, headers=operator)
    assert response.status_code == 201, response.get_json()
    return "staff"


def index(client: FlaskClient, headers: dict[str, str], image: bytes, subject: str = "alice",
          collection: str = "staff", **extra: Any) -> Any:
    body = {"image": b64(image), "subject_id": subject, **extra}
    return client.post(f"/v1/collections/{collection}/faces", json=body, headers=headers)


# --- collections ---------------------------------------------------------------------

def test_creating_a_collection_records_the_engine_and_answers_like_create_collection(
        client: FlaskClient, operator: dict[str, str], app: Flask) -> None:
    response = client.post("/v1/collections", json={"collection_id": "staff",
                                                    "description": "office doors"},
                           headers=operator)
    assert response.status_code == 201
    body = response.get_json()
    assert body["FaceModelVersion"] == "fake-1"
    assert body["CollectionArn"].endswith("collection/staff")
    assert_conforms("CreateCollection", {k: v for k, v in body.items() if k != "CollectionId"})
    described = client.get("/v1/collections/staff", headers=operator).get_json()
    assert described["Engine"] == "fake"
    assert described["Description"] == "office doors"
    assert described["ConsentRequired"] is True
    assert "collection.create" in actions(app)


def test_a_taken_collection_id_is_409_collection_exists(
        client: FlaskClient, operator: dict[str, str], staff: str, app: Flask) -> None:
    before = row_counts(app)
    response = client.post("/v1/collections", json={"collection_id": staff}, headers=operator)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "collection_exists"
    assert row_counts(app) == before


@pytest.mark.parametrize("bad", [{"collection_id": "a/b"}, {"collection_id": ""}, {},
                                 {"collection_id": "ok", "colour": "red"}])
def test_a_malformed_create_request_is_422(client: FlaskClient, operator: dict[str, str],
                                           bad: dict[str, str]) -> None:
    response = client.post("/v1/collections", json=bad, headers=operator)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"


def test_an_app_key_may_not_manage_collections(client: FlaskClient,
                                               auth_headers: HeadersFactory) -> None:
    response = client.post("/v1/collections", json={"collection_id": "x"},
                           headers=auth_headers("app"))
    assert response.status_code == 403


def test_collections_are_listed_by_id_a_page_at_a_time(
        client: FlaskClient, operator: dict[str, str]) -> None:
    for name in ("c3", "c1", "c2"):
        client.post("/v1/collections", json={"collection_id": name}, headers=operator)
    first = client.get("/v1/collections?max_results=2", headers=operator).get_json()
    assert first["CollectionIds"] == ["c1", "c2"]
    assert first["FaceModelVersions"] == ["fake-1", "fake-1"]
    second = client.get(f"/v1/collections?max_results=2&next_token={first['NextToken']}",
                        headers=operator).get_json()
    assert second["CollectionIds"] == ["c3"]
    assert "NextToken" not in second
    assert_conforms("ListCollections", second)


def test_a_scoped_key_sees_only_its_collections_and_404s_on_the_others(
        client: FlaskClient, operator: dict[str, str], auth_headers: HeadersFactory) -> None:
    for name in ("mine", "theirs"):
        client.post("/v1/collections", json={"collection_id": name}, headers=operator)
    scoped = auth_headers("operator", collections=["mine"])
    listed = client.get("/v1/collections", headers=scoped).get_json()
    assert listed["CollectionIds"] == ["mine"]
    hidden = client.get("/v1/collections/theirs", headers=scoped)
    missing = client.get("/v1/collections/nowhere", headers=scoped)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_json()["error"]["code"] == missing.get_json()["error"]["code"]


def test_an_unknown_collection_is_404_not_found_on_every_collection_route(
        client: FlaskClient, operator: dict[str, str], fake_engine: FakeEngine) -> None:
    image = scripted(fake_engine, face())
    responses = [
        client.get("/v1/collections/nope", headers=operator),
        client.delete("/v1/collections/nope", headers=operator),
        index(client, operator, image, collection="nope", consent=CONSENT),
        client.get("/v1/collections/nope/faces", headers=operator),
        client.delete("/v1/collections/nope/faces", json={"face_ids": ["x"]}, headers=operator),
        client.get("/v1/collections/nope/subjects/alice", headers=operator),
        client.delete("/v1/collections/nope/subjects/alice", headers=operator),
        client.post("/v1/collections/nope/subjects/alice/consent", json=CONSENT,
                    headers=operator),
    ]
    for response in responses:
        assert response.status_code == 404, response.get_json()
        assert response.get_json()["error"]["code"] == "not_found"


def test_describing_a_collection_counts_its_faces_and_subjects(
        client: FlaskClient, operator: dict[str, str], staff: str,
        fake_engine: FakeEngine) -> None:
    index(client, operator, scripted(fake_engine, face(), seed=1), consent=CONSENT)
    index(client, operator, scripted(fake_engine, face(), seed=2), consent=CONSENT)
    index(client, operator, scripted(fake_engine, face(), seed=3), subject="bob",
          consent=CONSENT)
    body = client.get("/v1/collections/staff", headers=operator).get_json()
    assert (body["FaceCount"], body["UserCount"]) == (3, 2)
    assert_conforms("DescribeCollection", {k: v for k, v in body.items() if k in (
        "FaceCount", "FaceModelVersion", "CollectionARN", "CreationTimestamp", "UserCount")})


def test_deleting_a_collection_deletes_its_faces_subjects_and_consents(
        client: FlaskClient, operator: dict[str, str], staff: str, fake_engine: FakeEngine,
        app: Flask) -> None:
    index(client, operator, scripted(fake_engine, face()), consent=CONSENT)
    response = client.delete("/v1/collections/staff", headers=operator)
    assert response.status_code == 200
    assert_conforms("DeleteCollection", response.get_json())
    counts = row_counts(app)
    assert (counts["collections"], counts["subjects"], counts["faces"], counts["consents"]) \
        == (0, 0, 0, 0)
    assert client.get("/v1/collections/staff", headers=operator).status_code == 404
    assert actions(app)[-1] == "collection.delete"


# --- IndexFaces ----------------------------------------------------------------------

def test_index_faces_answers_like_rekognition_with_records_and_unindexed_faces(
        client: FlaskClient, operator: dict[str, str], staff: str,
        fake_engine: FakeEngine) -> None:
    image = scripted(fake_engine, face(size=0.4), face(left=0.05, size=0.05, width_px=12))
    response = index(client, operator, image, consent=CONSENT)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body.pop("AuditEventId")
    assert_conforms("IndexFaces", body)
    [record] = body["FaceRecords"]
    assert record["Face"]["ExternalImageId"] == record["Face"]["UserId"] == "alice"
    assert record["Face"]["IndexFacesModelVersion"] == "fake-1"
    assert record["FaceDetail"]["BoundingBox"]["Width"] == 0.4
    [unindexed] = body["UnindexedFaces"]
    assert unindexed["Reasons"] == ["SMALL_BOUNDING_BOX"]
    assert body["FaceModelVersion"] == "fake-1"


def test_max_faces_indexes_the_largest_and_reports_the_rest_as_exceeding(
        client: FlaskClient, operator: dict[str, str], staff: str,
        fake_engine: FakeEngine) -> None:
    image = scripted(fake_engine, face(size=0.2), face(left=0.5, size=0.3))
    body = index(client, operator, image, consent=CONSENT, max_faces=1).get_json()
    assert [r["FaceDetail"]["BoundingBox"]["Width"] for r in body["FaceRecords"]] == [0.3]
    assert body["UnindexedFaces"][0]["Reasons"] == ["EXCEEDS_MAX_FACES"]


def test_quality_filter_none_indexes_a_face_auto_would_refuse(
        client: FlaskClient, operator: dict[str, str], staff: str,
        fake_engine: FakeEngine) -> None:
    blurred = face(sharpness=2.0)
    auto = index(client, operator, scripted(fake_engine, blurred), consent=CONSENT).get_json()
    assert auto["FaceRecords"] == []
    assert auto["UnindexedFaces"][0]["Reasons"] == ["LOW_SHARPNESS"]
    none = index(client, operator, scripted(fake_engine, blurred), quality_filter="NONE",
                 consent=CONSENT).get_json()
    assert len(none["FaceRecords"]) == 1


def test_indexing_without_consent_is_422_consent_required_and_writes_nothing(
        client: FlaskClient, operator: dict[str, str], staff: str, fake_engine: FakeEngine,
        app: Flask) -> None:
    before = row_counts(app)
    response = index(client, operator, scripted(fake_engine, face()))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "consent_required"
    assert row_counts(app) == before
    assert fake_engine.calls == []  # refused before any engine work


def test_a_recorded_consent_covers_later_enrollments_of_the_subject(
        client: FlaskClient, operator: dict[str, str], staff: str, fake_engine: FakeEngine,
        app: Flask) -> None:
    recorded = client.post("/v1/collections/staff/subjects/alice/consent", json=CONSENT,
                           headers=operator)
    assert recorded.status_code == 201
    assert recorded.get_json()["Basis"] == "explicit_consent"
    assert index(client, operator, scripted(fake_engine, face())).status_code == 200
    assert "subject.consent" in actions(app)


def test_a_collection_created_without_the_consent_rule_indexes_without_consent(
        client: FlaskClient, operator: dict[str, str], fake_engine: FakeEngine) -> None:
    client.post("/v1/collections", json={"collection_id": "open", "consent_required": False},
                headers=operator)
    response = index(client, operator, scripted(fake_engine, face()), collection="open")
    assert response.status_code == 200
    assert len(response.get_json()["FaceRecords"]) == 1


def test_the_consent_is_shown_on_the_subject_with_its_faces(
        client: FlaskClient, operator: dict[str, str], staff: str,
        fake_engine: FakeEngine) -> None:
    indexed = index(client, operator, scripted(fake_engine, face()), consent=CONSENT).get_json()
    body = client.get("/v1/collections/staff/subjects/alice", headers=operator).get_json()
    assert body["SubjectId"] == "alice"
    assert body["Consent"]["Basis"] == "explicit_consent"
    assert body["Consent"]["Reference"] == "form-2026-001"
    assert [f["FaceId"] for f in body["Faces"]] == [indexed["FaceRecords"][0]["Face"]["FaceId"]]
    assert body["FaceCount"] == 1


def test_an_unknown_subject_is_404(client: FlaskClient, operator: dict[str, str],
                                   staff: str) -> None:
    response = client.get("/v1/collections/staff/subjects/ghost", headers=operator)
    assert response.status_code == 404


def test_index_faces_accepts_a_multipart_upload_with_consent_as_json(
        client: FlaskClient, operator: dict[str, str], staff: str,
        fake_engine: FakeEngine) -> None:
    image = scripted(fake_engine, face())
    response = client.post(
        "/v1/collections/staff/faces", headers=operator, content_type="multipart/form-data",
        data={"image": (io.BytesIO(image), "a.png"), "subject_id": "alice", "max_faces": "2",
              "consent": json.dumps(CONSENT)})
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["FaceRecords"]) == 1


@pytest.mark.parametrize(("image", "expected"), [
    (b"not an image at all", (415, "unsupported_image_format")),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, (422, "invalid_image")),
])
@pytest.mark.usefixtures("staff")
def test_a_bad_image_gets_the_intake_code_and_writes_nothing(
        client: FlaskClient, operator: dict[str, str], app: Flask,
        image: bytes, expected: tuple[int, str]) -> None:
    before = row_counts(app)
    response = index(client, operator, image, consent=CONSENT)
    assert (response.status_code, response.get_json()["error"]["code"]) == expected
    assert row_counts(app) == before


@pytest.mark.parametrize("extra", [{"quality_filter": "SOMETIMES"}, {"max_faces": 0},
                                   {"subject_id": "a b"},
                                   {"consent": {"basis": "because", "reference": "x"}}])
def test_bad_index_options_are_422(client: FlaskClient, operator: dict[str, str], staff: str,
                                   fake_engine: FakeEngine, extra: dict[str, Any]) -> None:
    body = {"image": b64(scripted(fake_engine, face())), "subject_id": "alice",
            "consent": CONSENT, **extra}
    response = client.post("/v1/collections/staff/faces", json=body, headers=operator)
    assert response.status_code == 422


def test_a_missing_image_is_422_missing_image(client: FlaskClient, operator: dict[str, str],
                                              staff: str) -> None:
    response = client.post("/v1/collections/staff/faces",
                           json={"subject_id": "alice", "consent": CONSENT}, headers=operator)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "missing_image"


def test_the_index_event_has_the_image_digest_but_no_descriptor(
        client: FlaskClient, operator: dict[str, str], staff: str, fake_engine: FakeEngine,
        app: Flask) -> None:
    image = scripted(fake_engine, face())
    index(client, operator, image, consent=CONSENT)
    d = app.extensions["faceapi"]
    with d.store.engine.connect() as conn:
        row = conn.execute(select(audit_events)
                           .where(audit_events.c.action == "face.index")).one()
    assert json.loads(row.input_digests) == [hashlib.sha256(image).hexdigest()]
    assert row.subject_id == "alice"
    text = json.dumps([str(v) for v in row])
    assert str(round(unit_vector(1)[0], 6))[:8] not in text


# --- ListFaces / DeleteFaces ----------------------------------------------------------

def test_faces_are_listed_a_page_at_a_time_and_filtered_by_subject(
        client: FlaskClient, operator: dict[str, str], staff: str,
        fake_engine: FakeEngine) -> None:
    for i, subject in enumerate(["alice", "alice", "bob"]):
        index(client, operator, scripted(fake_engine, face(), seed=10 + i), subject=subject,
              consent=CONSENT)
    first = client.get("/v1/collections/staff/faces?max_results=2", headers=operator).get_json()
    assert len(first["Faces"]) == 2
    assert_conforms("ListFaces", first)
    rest = client.get(f"/v1/collections/staff/faces?max_results=2&next_token={first['NextToken']}",
                      headers=operator).get_json()
    assert len(rest["Faces"]) == 1
    assert "NextToken" not in rest
    ids = {f["FaceId"] for f in first["Faces"] + rest["Faces"]}
    assert len(ids) == 3
    bobs = client.get("/v1/collections/staff/faces?subject_id=bob", headers=operator).get_json()
    assert [f["ExternalImageId"] for f in bobs["Faces"]] == ["bob"]


def test_deleting_faces_reports_unknown_ids_as_not_found(
        client: FlaskClient, operator: dict[str, str], staff: str, fake_engine: FakeEngine,
        app: Flask) -> None:
    body = index(client, operator, scripted(fake_engine, face()), consent=CONSENT).get_json()
    face_id = body["FaceRecords"][0]["Face"]["FaceId"]
    response = client.delete("/v1/collections/staff/faces",
                             json={"face_ids": [face_id, "no-such-face"]}, headers=operator)
    assert response.status_code == 200
    result = response.get_json()
    assert_conforms("DeleteFaces", result)
    assert result["DeletedFaces"] == [face_id]
    assert result["UnsuccessfulFaceDeletions"] == [
        {"FaceId": "no-such-face", "Reasons": ["FACE_NOT_FOUND"]}]
    assert row_counts(app)["faces"] == 0
    assert actions(app)[-1] == "face.delete"


def test_deleting_no_face_ids_is_422(client: FlaskClient, operator: dict[str, str],
                                     staff: str) -> None:
    response = client.delete("/v1/collections/staff/faces", json={"face_ids": []},
                             headers=operator)
    assert response.status_code == 422


def test_the_search_index_sees_new_and_deleted_faces(
        client: FlaskClient, operator: dict[str, str], staff: str, fake_engine: FakeEngine,
        app: Flask) -> None:
    index_ = app.extensions["faceapi"].index
    assert index_.search("staff", unit_vector(5), threshold=99, max_faces=1) == []
    body = index(client, operator, scripted(fake_engine, face(), seed=5),
                 consent=CONSENT).get_json()
    face_id = body["FaceRecords"][0]["Face"]["FaceId"]
    [hit] = index_.search("staff", unit_vector(5), threshold=99, max_faces=1)
    assert (hit.face_id, hit.subject_id) == (face_id, "alice")
    client.delete("/v1/collections/staff/faces", json={"face_ids": [face_id]}, headers=operator)
    assert index_.search("staff", unit_vector(5), threshold=99, max_faces=1) == []


class OtherFakeEngine(FakeEngine):
    @property
    def name(self) -> str:
        return "other"


def test_a_collection_of_another_engine_is_refused_with_409_engine_mismatch(
        client: FlaskClient, operator: dict[str, str], fake_engine: FakeEngine,
        app: Flask) -> None:
    # Another model version of the same engine is no longer refused: each face has its
    # template version (tests/unit/test_usecase_reindex.py). Another engine still is.
    d = app.extensions["faceapi"]
    create_collection(CreateCollectionRequest("old"), actor=Actor.system("tests"),
                      engine=OtherFakeEngine(), uow=d.store.uow(), clock=d.clock)
    before = row_counts(app)
    response = index(client, operator, scripted(fake_engine, face()), collection="old",
                     consent=CONSENT)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "engine_mismatch"
    assert row_counts(app) == before


@pytest.mark.parametrize("case", [
    ("post", "/v1/collections/staff/subjects/alice/consent",
     {"basis": "because", "reference": "form-1"}),
    ("post", "/v1/collections/staff/subjects/alice/consent",
     {"basis": "explicit_consent"}),
    ("post", "/v1/collections/staff/subjects/alice/consent", {**CONSENT, "extra": 1}),
    ("post", "/v1/collections/staff/subjects/a%20b/consent", CONSENT),
    ("post", "/v1/collections/staff/faces", {"image": "not-an-object", "subject_id": "a"}),
    ("delete", "/v1/collections/staff/faces", {"face_ids": "f1"}),
    ("delete", "/v1/collections/staff/faces", {"face_ids": ["f1"], "extra": 1}),
    ("post", "/v1/collections", {"collection_id": "two", "extra": 1}),
])
def test_a_malformed_collection_request_is_422_and_writes_nothing(
        client: FlaskClient, app: Flask, operator: dict[str, str], staff: str,
        case: tuple[str, str, dict[str, Any]]) -> None:
    method, path, body = case
    before = row_counts(app)
    response = getattr(client, method)(path, json=body, headers=operator)
    assert response.status_code == 422, response.get_json()
    assert row_counts(app) == before
