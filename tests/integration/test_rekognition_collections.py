"""REST collections on the Rekognition engine (issue 7): faces kept by the engine.

Our app runs with a RekognitionEngine whose real boto3 client talks to our own
Rekognition emulator on a real HTTP server (tests/emulator_server.py), which answers
with the local engine and its own store. So every remote call goes through sockets,
botocore's serialisation and response parsing as it would for AWS; no test calls AWS.

The emulator is itself a faceapi and asks for a recorded consent per subject before
IndexFaces (AWS does not); `remote_consent` records it there, as an operator of that
service would.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from faceapi.adapters.engines.rekognition import RekognitionEngine
from faceapi.adapters.store.tables import faces
from faceapi.config import Settings
from faceapi.domain.audit import SYSTEM
from faceapi.domain.errors import NotFound
from faceapi.entrypoints.web.api.deps import EXTENSION_KEY
from faceapi.entrypoints.web.app import create_app
from faceapi.services.collections import CreateCollectionRequest, create_collection
from faceapi.services.enroll import IndexFacesRequest, index_faces
from tests.botocore_shapes import ShapeChecker
from tests.conftest import REPO
from tests.emulator_server import LiveServer, api_key, key_session, serve
from tests.integration.test_face_crops import FailingCommit

JACK_A = "deepface/tests/unit/dataset/img16.jpg"  # jack_dorsey
JACK_B = "deepface/tests/unit/dataset/img17.jpg"  # jack_dorsey
KATY = "deepface/tests/unit/dataset/img46.jpg"  # katy_perry
PREFIX = "faceapi-"
CONSENT = {"basis": "explicit_consent", "reference": "form-rk-1"}


@dataclass
class Photos:
    jack_a: bytes
    jack_b: bytes
    katy: bytes


@pytest.fixture(scope="module")
def photos() -> Photos:
    from tests.conftest import shared_faces_dir

    root = shared_faces_dir()
    if not (root / "LABELS.csv").is_file():
        pytest.skip(f"shared face data set not found at {root} (set FACEAPI_FACES_DIR)")
    return Photos(*(Path(root, name).read_bytes() for name in (JACK_A, JACK_B, KATY)))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from faceapi.adapters.engines.local import LocalEngine

    local = LocalEngine(Settings(env="test"))
    ok, why = local.ready()
    if not ok:
        pytest.skip(f"local engine not ready: {why}")
    settings = Settings(env="test", data_dir=tmp_path_factory.mktemp("aws"),
                        log_format="json", policies_dir=REPO / "policies")
    live = serve(create_app(settings, engine=local))
    try:
        yield live
    finally:
        live.stop()
        live.app.extensions[EXTENSION_KEY].store.dispose()


@pytest.fixture
def engine(emulator: LiveServer) -> RekognitionEngine:
    settings = Settings(env="test", engine="rekognition", aws_endpoint_url=emulator.url,
                        aws_max_attempts=2, aws_read_timeout=60.0,
                        rekognition_collection_prefix=PREFIX)
    remote = RekognitionEngine(settings, session=key_session(api_key(emulator.app,
                                                                     "operator")))
    remote.client.meta.events.register("after-call.rekognition", ShapeChecker())
    return remote


@pytest.fixture
def app(tmp_path: Path, engine: RekognitionEngine, database_url: str) -> Iterator[Flask]:
    # Our app on the selected database (SQLite, or PostgreSQL with --db=postgresql).
    settings = Settings(env="test", data_dir=tmp_path / "app", log_format="json",
                        policies_dir=REPO / "policies", engine="rekognition",
                        database_url=database_url)
    app = create_app(settings, engine=engine)
    yield app
    app.extensions[EXTENSION_KEY].store.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Rig:
    """Our app on the Rekognition engine, the emulator behind it, a fresh collection id."""

    app: Flask
    client: FlaskClient
    emulator: LiveServer
    engine: RekognitionEngine
    collection_id: str


@pytest.fixture
def rig(app: Flask, client: FlaskClient, emulator: LiveServer,
        engine: RekognitionEngine) -> Rig:
    return Rig(app, client, emulator, engine, f"rk-{uuid.uuid4().hex[:10]}")


def b64(data: bytes) -> dict[str, str]:
    return {"bytes": base64.b64encode(data).decode("ascii")}


def bearer(app: Flask, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(app, role)}"}


def remote_consent(emulator: LiveServer, collection_id: str, subject: str) -> None:
    response = emulator.app.test_client().post(
        f"/v1/collections/{PREFIX}{collection_id}/subjects/{subject}/consent",
        headers=bearer(emulator.app, "operator"), json=CONSENT)
    assert response.status_code == 201, response.get_json()


def remote_faces(engine: RekognitionEngine, collection_id: str) -> list[Any]:
    return list(engine.list_faces(collection_id, 4096).faces)


def enroll(client: FlaskClient, headers: dict[str, str], collection_id: str, subject: str,
           image: bytes) -> dict[str, Any]:
    response = client.post(f"/v1/collections/{collection_id}/faces", headers=headers, json={
        "image": b64(image), "subject_id": subject, "max_faces": 1, "consent": CONSENT})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def verify(client: FlaskClient, headers: dict[str, str], collection_id: str, subject: str,
           image: bytes, *, policy: str = "login") -> dict[str, Any]:
    response = client.post("/v1/verify", headers=headers, json={
        "collection_id": collection_id, "subject_id": subject, "policy": policy,
        "image": b64(image)})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def our_faces(app: Flask, collection_id: str) -> list[Any]:
    with app.extensions[EXTENSION_KEY].store.engine.connect() as conn:
        return list(conn.execute(select(faces).where(faces.c.collection_id == collection_id)))


def test_collections_enroll_verify_search_and_erase_through_rest_on_rekognition(
        rig: Rig, photos: Photos) -> None:
    app, client, emulator, engine = rig.app, rig.client, rig.emulator, rig.engine
    collection_id = rig.collection_id
    operator = bearer(app, "operator")
    created = client.post("/v1/collections", headers=operator,
                          json={"collection_id": collection_id})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["FaceModelVersion"] == engine.model_version
    assert engine.describe_collection(collection_id).face_count == 0  # made remotely

    remote_consent(emulator, collection_id, "jack")
    remote_consent(emulator, collection_id, "katy")
    jack = enroll(client, operator, collection_id, "jack", photos.jack_a)
    enroll(client, operator, collection_id, "katy", photos.katy)
    [record] = jack["FaceRecords"]
    rows = {row.face_id: row for row in our_faces(app, collection_id)}
    assert set(rows) >= {record["Face"]["FaceId"]}
    jack_row = rows[record["Face"]["FaceId"]]
    assert jack_row.embedding is None  # descriptors stay with the engine
    assert {f.face_id for f in remote_faces(engine, collection_id)} == \
        {row.engine_face_id for row in rows.values()}
    assert client.get(f"/v1/collections/{collection_id}",
                      headers=operator).get_json()["FaceCount"] == 2

    app_key = bearer(app, "app")
    matched = verify(client, app_key, collection_id, "jack", photos.jack_b)
    assert matched["outcome"] == "match", matched
    assert matched["similarity"] >= matched["threshold"] == 80.0  # login's
    impostor = verify(client, app_key, collection_id, "jack", photos.katy)
    assert impostor["outcome"] == "no_match", impostor
    unknown = verify(client, app_key, collection_id, "nobody", photos.jack_b)
    assert unknown["outcome"] == "no_match"

    found = client.post(f"/v1/collections/{collection_id}/search", headers=app_key, json={
        "policy": "photo_tagging", "image": b64(photos.jack_b)})
    assert found.status_code == 200, found.get_json()
    body = found.get_json()
    assert body["decision"]["outcome"] == "match"
    assert [m["Face"]["FaceId"] for m in body["FaceMatches"]] == [jack_row.face_id]
    assert body["FaceMatches"][0]["Face"]["ExternalImageId"] == "jack"

    erased = client.delete(f"/v1/collections/{collection_id}/subjects/jack",
                           headers=operator)
    assert erased.status_code == 200, erased.get_json()
    assert erased.get_json()["DeletedOther"]["remote_face"] == 1
    assert jack_row.engine_face_id not in {f.face_id for f in remote_faces(engine,
                                                                           collection_id)}
    assert all(row.subject_id != "jack" for row in our_faces(app, collection_id))
    again = verify(client, app_key, collection_id, "jack", photos.jack_b)
    assert again["outcome"] == "no_match"

    assert client.delete(f"/v1/collections/{collection_id}",
                         headers=operator).status_code == 200
    with pytest.raises(NotFound):
        engine.describe_collection(collection_id)
    assert our_faces(app, collection_id) == []


def test_a_consequential_verify_goes_to_review_with_the_candidates_crop(
        rig: Rig, photos: Photos) -> None:
    app, client, emulator, collection_id = rig.app, rig.client, rig.emulator, rig.collection_id
    operator = bearer(app, "operator")
    client.post("/v1/collections", headers=operator,
                json={"collection_id": collection_id, "policies": ["identity_check"]})
    remote_consent(emulator, collection_id, "jack")
    face_id = enroll(client, operator, collection_id, "jack",
                     photos.jack_a)["FaceRecords"][0]["Face"]["FaceId"]
    pending = verify(client, bearer(app, "app"), collection_id, "jack", photos.jack_b,
                     policy="identity_check")
    assert pending["outcome"] == "pending_review"
    review = client.get(f"/v1/reviews/{pending['review_id']}",
                        headers=bearer(app, "reviewer")).get_json()
    assert f"candidate_{face_id}.jpg" in {e["name"] for e in review["evidence"]}


def test_a_failed_commit_after_a_remote_index_deletes_the_remote_faces(
        rig: Rig, photos: Photos) -> None:
    app, client, emulator, engine = rig.app, rig.client, rig.emulator, rig.engine
    collection_id = rig.collection_id
    operator = bearer(app, "operator")
    client.post("/v1/collections", headers=operator, json={"collection_id": collection_id})
    remote_consent(emulator, collection_id, "jack")
    client.post(f"/v1/collections/{collection_id}/subjects/jack/consent", headers=operator,
                json=CONSENT)
    d = app.extensions[EXTENSION_KEY]
    with pytest.raises(RuntimeError):
        index_faces(IndexFacesRequest(collection_id=collection_id, image=photos.jack_a,
                                      subject_id="jack"),
                    actor=SYSTEM, engine=engine,
                    uow=FailingCommit(d.store.uow()),  # type: ignore[arg-type]
                    clock=d.clock, decoder=d.decoder, blobs=d.blobs)
    assert remote_faces(engine, collection_id) == []  # compensated
    assert our_faces(app, collection_id) == []
    crops = Path(d.settings.resolved_blob_dir) / "faces" / collection_id
    assert not crops.exists() or not any(crops.iterdir())


def test_a_taken_collection_id_is_409_and_the_engine_collection_stays(rig: Rig) -> None:
    app, client, engine, collection_id = rig.app, rig.client, rig.engine, rig.collection_id
    operator = bearer(app, "operator")
    assert client.post("/v1/collections", headers=operator,
                       json={"collection_id": collection_id}).status_code == 201
    again = client.post("/v1/collections", headers=operator,
                        json={"collection_id": collection_id})
    assert again.status_code == 409
    engine.describe_collection(collection_id)  # the first one's remote collection stays


def test_deleting_faces_through_rest_deletes_them_in_the_engine_with_their_crops(
        rig: Rig, photos: Photos) -> None:
    app, client, engine, collection_id = rig.app, rig.client, rig.engine, rig.collection_id
    operator = bearer(app, "operator")
    client.post("/v1/collections", headers=operator, json={"collection_id": collection_id})
    remote_consent(rig.emulator, collection_id, "katy")
    face_id = enroll(client, operator, collection_id, "katy",
                     photos.katy)["FaceRecords"][0]["Face"]["FaceId"]
    crop = Path(app.extensions[EXTENSION_KEY].settings.resolved_blob_dir) / "faces" / \
        collection_id / f"{face_id}.jpg"
    assert crop.is_file()
    assert len(remote_faces(engine, collection_id)) == 1
    deleted = client.delete(f"/v1/collections/{collection_id}/faces", headers=operator,
                            json={"face_ids": [face_id]})
    assert deleted.get_json()["DeletedFaces"] == [face_id]
    assert remote_faces(engine, collection_id) == []
    assert our_faces(app, collection_id) == []
    assert not crop.exists()


def test_a_failed_commit_after_a_remote_create_deletes_the_engine_collection(
        rig: Rig) -> None:
    d = rig.app.extensions[EXTENSION_KEY]
    with pytest.raises(RuntimeError):
        create_collection(CreateCollectionRequest(rig.collection_id), actor=SYSTEM,
                          engine=rig.engine,
                          uow=FailingCommit(d.store.uow()),  # type: ignore[arg-type]
                          clock=d.clock)
    with pytest.raises(NotFound):
        rig.engine.describe_collection(rig.collection_id)
    # Nothing half-written: the same id can be created afterwards.
    assert rig.client.post("/v1/collections", headers=bearer(rig.app, "operator"),
                           json={"collection_id": rig.collection_id}).status_code == 201
