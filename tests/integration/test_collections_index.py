"""Two workers (two apps on one database, each with its own in-process index) agree on
a collection's faces after every change, because each compares the collection's version
with its copy's before searching."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.entrypoints.web.app import create_app
from faceapi.services.collections import CreateCollectionRequest, create_collection, delete_faces
from faceapi.services.enroll import IndexFacesRequest, index_faces
from faceapi.services.erase import erase_subject
from tests.conftest import solid_image
from tests.fakes import FakeClock, FakeEngine, ScriptedFace, face, unit_vector

OPERATOR = Actor.system("tests")


@pytest.fixture
def workers(settings: Settings, fake_engine: FakeEngine) -> Iterator[tuple[Flask, Flask]]:
    first = create_app(settings, engine=fake_engine, clock=FakeClock())
    second = create_app(settings, engine=fake_engine, clock=FakeClock())
    yield first, second
    for app in (first, second):
        app.extensions["faceapi"].store.dispose()


def enroll(app: Flask, subject: str, seed: int) -> str:
    d = app.extensions["faceapi"]
    image = solid_image(20, 20, color=(seed, 3, 3))
    d.engine.script(image, [ScriptedFace(face(), unit_vector(seed))])
    result = index_faces(IndexFacesRequest("c", image, subject), actor=OPERATOR,
                         engine=d.engine, uow=d.store.uow(), clock=d.clock, decoder=d.decoder,
                         blobs=d.blobs)
    return result.face_records[0].face.face_id


def found(app: Flask, seed: int) -> list[str]:
    hits = app.extensions["faceapi"].index.search("c", unit_vector(seed), threshold=99,
                                                  max_faces=5)
    return [h.subject_id for h in hits]


def test_a_face_enrolled_through_one_worker_is_found_by_the_other(
        workers: tuple[Flask, Flask]) -> None:
    first, second = workers
    d = first.extensions["faceapi"]
    create_collection(CreateCollectionRequest("c", consent_required=False), actor=OPERATOR,
                      engine=d.engine, uow=d.store.uow(), clock=d.clock)
    enroll(first, "alice", 1)
    assert found(second, 1) == ["alice"]  # second builds its copy
    enroll(first, "bob", 2)
    assert found(second, 2) == ["bob"]  # ... and extends it with bob only
    assert found(first, 1) == ["alice"]


def test_deletions_and_erasures_through_one_worker_disappear_from_the_other(
        workers: tuple[Flask, Flask]) -> None:
    first, second = workers
    d = first.extensions["faceapi"]
    create_collection(CreateCollectionRequest("c", consent_required=False), actor=OPERATOR,
                      engine=d.engine, uow=d.store.uow(), clock=d.clock)
    alice = enroll(first, "alice", 1)
    enroll(first, "bob", 2)
    assert found(second, 1) == ["alice"]
    assert found(second, 2) == ["bob"]
    delete_faces("c", [alice], actor=OPERATOR, uow=d.store.uow(), engine=d.engine,
                 blobs=d.blobs)
    assert found(second, 1) == []
    erase_subject("c", "bob", actor=OPERATOR, uow=d.store.uow())
    assert found(second, 2) == []
