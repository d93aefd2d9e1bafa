"""Crops of enrolled faces for reviewers (services/face_crops.py), through HTTP: kept at
enrollment unless the collection says not to, copied into review evidence as
`candidate_<face id>.jpg`, and gone with the face, the subject or the collection. The
tests read the blob directory directly."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import select

from faceapi.adapters.store.tables import audit_events
from faceapi.domain.audit import SYSTEM
from faceapi.services.enroll import IndexFacesRequest, index_faces
from tests.conftest import HeadersFactory, solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector

ALICE = unit_vector(11)
BOB = unit_vector(12)
CONSENT = {"basis": "explicit_consent", "reference": "form-9"}
_colours = iter(range(1, 10_000))


def b64(data: bytes) -> dict[str, str]:
    return {"bytes": base64.b64encode(data).decode("ascii")}


def scripted(engine: FakeEngine, vector: tuple[float, ...], size: int = 800) -> bytes:
    n = next(_colours)
    image = solid_image(size, size, color=(n % 251, 90, (n // 251) % 251))
    engine.script(image, [ScriptedFace(face(), vector)])
    return image


def blob_root(app: Flask) -> Path:
    return Path(app.extensions["faceapi"].settings.resolved_blob_dir)


def crop_files(app: Flask, collection_id: str) -> dict[str, bytes]:
    folder = blob_root(app) / "faces" / collection_id
    return {p.stem: p.read_bytes() for p in folder.glob("*.jpg")} if folder.is_dir() else {}


@pytest.fixture
def operator(auth_headers: HeadersFactory) -> dict[str, str]:
    return auth_headers("operator")


def create(client: FlaskClient, headers: dict[str, str], collection_id: str,
           **options: Any) -> None:
    # Bound to every verify and search policy: these tests decide under several.
    response = client.post("/v1/collections", headers=headers,
                           json={"collection_id": collection_id, "policies": [
                               "identity_check", "login", "photo_tagging",
                               "watchlist_search"], **options})
    assert response.status_code == 201, response.get_json()


def enroll(client: FlaskClient, engine: FakeEngine, headers: dict[str, str],
           collection_id: str, person: tuple[str, tuple[float, ...]]) -> str:
    subject, vector = person
    response = client.post(f"/v1/collections/{collection_id}/faces", headers=headers, json={
        "image": b64(scripted(engine, vector)), "subject_id": subject, "consent": CONSENT})
    assert response.status_code == 200, response.get_json()
    face_id: str = response.get_json()["FaceRecords"][0]["Face"]["FaceId"]
    return face_id


def test_enrollment_keeps_a_small_jpeg_crop_of_each_indexed_face(
        app: Flask, client: FlaskClient, operator: dict[str, str],
        fake_engine: FakeEngine) -> None:
    create(client, operator, "crops")
    face_id = enroll(client, fake_engine, operator, "crops", ("alice", ALICE))
    crops = crop_files(app, "crops")
    assert set(crops) == {face_id}
    with Image.open(io.BytesIO(crops[face_id])) as crop:
        assert crop.format == "JPEG"
        assert max(crop.size) <= 160
        assert min(crop.size) > 100  # an 800 px image, a 320 px box plus margin
        assert not crop.getexif()
    described = client.get("/v1/collections/crops", headers=operator).get_json()
    assert described["KeepFaceCrops"] is True


def test_a_collection_created_without_crops_keeps_none(
        app: Flask, client: FlaskClient, operator: dict[str, str],
        fake_engine: FakeEngine, auth_headers: HeadersFactory) -> None:
    create(client, operator, "nocrops", keep_face_crops=False)
    assert client.get("/v1/collections/nocrops",
                      headers=operator).get_json()["KeepFaceCrops"] is False
    enroll(client, fake_engine, operator, "nocrops", ("alice", ALICE))
    assert crop_files(app, "nocrops") == {}
    pending = client.post("/v1/verify", headers=auth_headers("app"), json={
        "collection_id": "nocrops", "subject_id": "alice", "policy": "identity_check",
        "image": b64(scripted(fake_engine, ALICE))}).get_json()
    review = client.get(f"/v1/reviews/{pending['review_id']}",
                        headers=auth_headers("reviewer")).get_json()
    assert not any(e["name"].startswith("candidate_") for e in review["evidence"])
    with app.extensions["faceapi"].store.engine.connect() as conn:
        created = conn.execute(select(audit_events.c.details).where(
            audit_events.c.action == "collection.create",
            audit_events.c.resource == "collections/nocrops")).scalar_one()
    assert json.loads(created)["keep_face_crops"] is False


def test_a_verify_sent_to_review_carries_the_candidates_crops(
        app: Flask, client: FlaskClient, operator: dict[str, str],
        fake_engine: FakeEngine, auth_headers: HeadersFactory) -> None:
    create(client, operator, "door")
    first = enroll(client, fake_engine, operator, "door", ("alice", ALICE))
    second = enroll(client, fake_engine, operator, "door", ("alice", ALICE))
    pending = client.post("/v1/verify", headers=auth_headers("app"), json={
        "collection_id": "door", "subject_id": "alice", "policy": "identity_check",
        "image": b64(scripted(fake_engine, ALICE))}).get_json()
    assert pending["outcome"] == "pending_review"
    reviewer = auth_headers("reviewer")
    review = client.get(f"/v1/reviews/{pending['review_id']}", headers=reviewer).get_json()
    names = {e["name"]: e["url"] for e in review["evidence"]}
    assert {f"candidate_{first}.jpg", f"candidate_{second}.jpg"} <= set(names)
    served = client.get(names[f"candidate_{first}.jpg"], headers=reviewer)
    assert served.status_code == 200
    assert served.data == crop_files(app, "door")[first]
    # A copy under the review: it follows the evidence's retention, not the face's.
    evidence = blob_root(app) / "reviews" / pending["review_id"]
    assert (evidence / f"candidate_{first}.jpg").is_file()


def test_a_search_sent_to_review_carries_the_candidates_crops(
        app: Flask, client: FlaskClient, operator: dict[str, str],
        fake_engine: FakeEngine, auth_headers: HeadersFactory) -> None:
    create(client, operator, "watch")
    alice = enroll(client, fake_engine, operator, "watch", ("alice", ALICE))
    bob = enroll(client, fake_engine, operator, "watch", ("bob", BOB))
    response = client.post("/v1/collections/watch/search", headers=auth_headers("app"), json={
        "policy": "watchlist_search", "image": b64(scripted(fake_engine, ALICE))})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()["decision"]
    assert body["outcome"] == "pending_review"
    review = client.get(f"/v1/reviews/{body['review_id']}",
                        headers=auth_headers("reviewer")).get_json()
    names = {e["name"] for e in review["evidence"]}
    assert f"candidate_{alice}.jpg" in names
    assert f"candidate_{bob}.jpg" not in names  # not a candidate (below the threshold)


def test_deleting_a_face_deletes_its_crop(
        app: Flask, client: FlaskClient, operator: dict[str, str],
        fake_engine: FakeEngine) -> None:
    create(client, operator, "c")
    gone = enroll(client, fake_engine, operator, "c", ("alice", ALICE))
    kept = enroll(client, fake_engine, operator, "c", ("alice", ALICE))
    response = client.delete("/v1/collections/c/faces", headers=operator,
                             json={"face_ids": [gone]})
    assert response.get_json()["DeletedFaces"] == [gone]
    assert set(crop_files(app, "c")) == {kept}


def test_erasing_a_subject_or_deleting_the_collection_deletes_the_crops(
        app: Flask, client: FlaskClient, operator: dict[str, str],
        fake_engine: FakeEngine) -> None:
    create(client, operator, "c")
    enroll(client, fake_engine, operator, "c", ("alice", ALICE))
    bob = enroll(client, fake_engine, operator, "c", ("bob", BOB))
    erased = client.delete("/v1/collections/c/subjects/alice", headers=operator).get_json()
    assert erased["DeletedOther"]["face_crop"] == 1
    assert set(crop_files(app, "c")) == {bob}
    assert client.delete("/v1/collections/c", headers=operator).status_code == 200
    assert not (blob_root(app) / "faces" / "c").exists()


class FailingCommit:
    """A unit of work whose commit fails: the enrollment's transaction rolls back."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> FailingCommit:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._inner.__exit__(*exc)

    def commit(self) -> None:
        raise RuntimeError("database went away")


def test_a_rolled_back_enrollment_leaves_no_crop_behind(
        app: Flask, client: FlaskClient, operator: dict[str, str],
        fake_engine: FakeEngine) -> None:
    create(client, operator, "c")
    d = app.extensions["faceapi"]
    client.post("/v1/collections/c/subjects/alice/consent", headers=operator, json=CONSENT)
    request = IndexFacesRequest(collection_id="c", image=scripted(fake_engine, ALICE),
                                subject_id="alice")
    with pytest.raises(RuntimeError):
        index_faces(request, actor=SYSTEM, engine=fake_engine,
                    uow=FailingCommit(d.store.uow()),  # type: ignore[arg-type]
                    clock=d.clock, decoder=d.decoder, blobs=d.blobs)
    assert crop_files(app, "c") == {}
    assert client.get("/v1/collections/c", headers=operator).get_json()["FaceCount"] == 0


def test_no_crop_or_image_bytes_reach_the_logs_or_the_audit_trail(
        app: Flask, client: FlaskClient, operator: dict[str, str],
        fake_engine: FakeEngine, auth_headers: HeadersFactory) -> None:
    create(client, operator, "c")
    with structlog.testing.capture_logs() as logs:
        enroll(client, fake_engine, operator, "c", ("alice", ALICE))
        client.post("/v1/verify", headers=auth_headers("app"), json={
            "collection_id": "c", "subject_id": "alice", "policy": "identity_check",
            "image": b64(scripted(fake_engine, ALICE))})
    crops = list(crop_files(app, "c").values())
    assert crops
    with app.extensions["faceapi"].store.engine.connect() as conn:
        trail = [tuple(row) for row in conn.execute(select(audit_events))]
    for crop in crops:
        encoded = base64.b64encode(crop).decode("ascii")
        for text in (repr(logs), repr(trail)):
            assert encoded[:64] not in text
            assert repr(crop[:32])[2:-1] not in text
    assert not any(isinstance(v, bytes) for entry in logs for v in entry.values())
