"""Kept face chips in the SQL store (SQLite; PostgreSQL with --db=postgresql): sealed at
rest and bound to their row, gone with their face, subject and collection whatever path
deletes them; and revision 0015's template versions for faces enrolled before it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text, update

from faceapi.adapters.secret_box import SecretBoxError
from faceapi.adapters.store import Store
from faceapi.adapters.store.migrate import downgrade_engine
from faceapi.adapters.store.tables import face_chips, faces
from faceapi.domain.audit import Action, Actor, AuditEvent
from faceapi.domain.collections import FaceChip, embedding_to_bytes
from tests.conftest import HeadersFactory, solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector

CONSENT = {"basis": "explicit_consent", "reference": "form-7"}
_colours = iter(range(1, 10_000))
pytestmark = pytest.mark.postgres


def b64(data: bytes) -> dict[str, str]:
    return {"bytes": base64.b64encode(data).decode("ascii")}


def scripted(engine: FakeEngine, seed: int) -> bytes:
    n = next(_colours)
    image = solid_image(40, 40, color=(n % 251, 23, (n // 251) % 251))
    engine.script(image, [ScriptedFace(face(), unit_vector(seed))])
    return image


@pytest.fixture
def operator(auth_headers: HeadersFactory) -> dict[str, str]:
    return auth_headers("operator")


def enroll(client: FlaskClient, operator: dict[str, str], engine: FakeEngine, *,
           subject: str, seed: int, collection: str = "staff") -> str:
    response = client.post(f"/v1/collections/{collection}/faces", headers=operator, json={
        "image": b64(scripted(engine, seed)), "subject_id": subject, "consent": CONSENT})
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["FaceRecords"][0]["Face"]["FaceId"])


def chip_rows(app: Flask) -> list[Any]:
    with app.extensions["faceapi"].store.engine.connect() as conn:
        return list(conn.execute(select(face_chips).order_by(face_chips.c.subject_id)))


@pytest.fixture
def staff(client: FlaskClient, operator: dict[str, str], fake_engine: FakeEngine) -> str:
    assert client.post("/v1/collections", headers=operator,
                       json={"collection_id": "staff"}).status_code == 201
    enroll(client, operator, fake_engine, subject="alice", seed=1)
    enroll(client, operator, fake_engine, subject="bob", seed=2)
    return "staff"


def test_an_enrolled_face_keeps_its_chip_sealed_not_in_the_clear(app: Flask, staff: str) -> None:
    rows = chip_rows(app)
    assert [r.subject_id for r in rows] == ["alice", "bob"]
    plain = embedding_to_bytes(unit_vector(1))  # the fake engine's chip of alice
    assert all(plain not in bytes(r.sealed) for r in rows)
    with app.extensions["faceapi"].store.uow() as uow:
        opened = uow.chips.get_many("staff", [rows[0].face_id])
    assert opened[rows[0].face_id].pixels == plain


def test_a_sealed_chip_moved_onto_another_faces_row_does_not_open_and_is_not_used(
        app: Flask, staff: str) -> None:
    alice, bob = chip_rows(app)
    store: Store = app.extensions["faceapi"].store
    with store.engine.begin() as conn:
        conn.execute(update(face_chips).where(face_chips.c.face_id == bob.face_id)
                     .values(sealed=alice.sealed))
    with store.uow() as uow:
        assert uow.chips.get_many("staff", [alice.face_id, bob.face_id]).keys() == {
            alice.face_id}
    # What refuses it is the seal itself, bound to bob's row.
    box = store.secret_box
    assert box is not None
    with pytest.raises(SecretBoxError):
        box.open_bytes(bytes(alice.sealed),
                       context=f"face_chips/staff/bob/{bob.face_id}")


def test_erasing_a_subject_deletes_its_chips_and_the_erasure_event_counts_them(
        client: FlaskClient, app: Flask, operator: dict[str, str], staff: str) -> None:
    response = client.delete("/v1/collections/staff/subjects/alice", headers=operator)
    assert response.status_code in (200, 204), response.get_data()
    assert [r.subject_id for r in chip_rows(app)] == ["bob"]
    with app.extensions["faceapi"].store.engine.connect() as conn:
        scores = conn.execute(text(
            "SELECT scores FROM audit_events WHERE action = 'subject.erase'")).scalar_one()
    assert '"face_chip_count":1' in scores.replace(" ", "")


def test_deleting_faces_by_id_and_deleting_the_collection_delete_their_chips(
        client: FlaskClient, app: Flask, operator: dict[str, str], staff: str) -> None:
    alice = chip_rows(app)[0].face_id
    client.delete("/v1/collections/staff/faces", json={"face_ids": [alice]}, headers=operator)
    assert [r.subject_id for r in chip_rows(app)] == ["bob"]
    assert client.delete("/v1/collections/staff", headers=operator).status_code in (200, 204)
    assert chip_rows(app) == []


def test_a_collection_created_with_keep_chips_false_keeps_none(
        client: FlaskClient, app: Flask, operator: dict[str, str],
        fake_engine: FakeEngine) -> None:
    from faceapi.services.collections import CreateCollectionRequest

    app.extensions["faceapi"].use_cases.create_collection(
        CreateCollectionRequest("nochips", keep_chips=False), actor=Actor.system("tests"))
    enroll(client, operator, fake_engine, subject="carol", seed=3, collection="nochips")
    assert chip_rows(app) == []


def test_0015_gives_faces_enrolled_before_it_the_template_version_of_their_collection(
        store: Store) -> None:
    downgrade_engine(store.engine, "0013_liveness")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with store.engine.begin() as conn:
        for cid, engine, model in (("hogs", "local", "dlib-19.24.2/resnet_v1/hog"),
                                   ("cnns", "local", "dlib-20.0.1/resnet_v1/cnn"),
                                   ("aws", "rekognition", "rekognition-2016-06-27")):
            conn.execute(text(
                "INSERT INTO collections (collection_id, description, engine, model_version, "
                "version, consent_required, keep_face_crops, created_at, policies) VALUES "
                "(:c, '', :e, :m, 1, false, false, :at, '')"), {"c": cid, "e": engine,
                                                                  "m": model, "at": at})
            conn.execute(text("INSERT INTO subjects (collection_id, subject_id, created_at) "
                              "VALUES (:c, 's', :at)"), {"c": cid, "at": at})
            conn.execute(text(
                "INSERT INTO faces (face_id, collection_id, subject_id, image_id, "
                "image_sha256, box_width, box_height, box_left, box_top, confidence, "
                "width_px, height_px, created_at, added_version) VALUES (:f, :c, 's', 'i', "
                "'x', 1, 1, 0, 0, 99, 0, 0, :at, 1)"), {"f": f"face-{cid}", "c": cid, "at": at})
    store.upgrade()
    with store.engine.connect() as conn:
        found = dict(conn.execute(select(faces.c.collection_id, faces.c.template_version)).all())
        keep = set(conn.execute(text("SELECT keep_chips FROM collections")).scalars())
    assert found == {"hogs": "dlib-19.24.2/resnet_v1/align68/jitter1",
                     "cnns": "dlib-20.0.1/resnet_v1/align68/jitter1",
                     "aws": "rekognition-2016-06-27"}
    assert keep == {True}


def test_chips_are_only_written_with_an_audit_event(store: Store) -> None:
    store.upgrade()
    with store.uow() as uow:
        uow.chips.add(FaceChip("c", "s", "f", "fmt", b"x" * 10))
        with pytest.raises(Exception, match="without an audit event"):
            uow.commit()
    with store.uow() as uow:
        uow.chips.add(FaceChip("c", "s", "f", "fmt", b"x" * 10))
        uow.audit.append(AuditEvent(action=Action.COLLECTION_REINDEX, outcome="batch",
                                    actor=Actor.system("tests"), resource="collections/c"))
        uow.commit()
    with store.uow() as uow:
        assert uow.chips.get_many("c", ["f"])["f"].pixels == b"x" * 10


def test_rest_creates_a_collection_without_chips_and_describe_shows_template_versions(
        client: FlaskClient, app: Flask, operator: dict[str, str],
        fake_engine: FakeEngine) -> None:
    response = client.post("/v1/collections", headers=operator,
                           json={"collection_id": "plain", "keep_chips": False})
    assert response.status_code == 201
    enroll(client, operator, fake_engine, subject="dave", seed=4, collection="plain")
    body = client.get("/v1/collections/plain", headers=operator).get_json()
    assert (body["KeepChips"], body["TemplateVersions"]) == (False, {"fake-1": 1})
    assert chip_rows(app) == []
