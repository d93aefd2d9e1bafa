"""Detect and compare record their audit event (digests and scores, never images)."""

from __future__ import annotations

import hashlib

import pytest

from faceapi.adapters.images import PillowImageDecoder
from faceapi.config import Settings
from faceapi.domain.audit import Actor
from faceapi.domain.errors import InvalidImage, NoFaceInSource
from faceapi.domain.faces import Attributes
from faceapi.services.compare import CompareRequest, compare
from faceapi.services.detect import DetectRequest, detect
from tests.conftest import solid_image
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector
from tests.fakes_audit import FakeUnitOfWork

SETTINGS = Settings(env="test")
ACTOR = Actor(role="app", key_id="k1")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_detect_records_the_face_count_and_the_image_digest_only() -> None:
    engine, uow = FakeEngine(), FakeUnitOfWork()
    image = solid_image(color=(1, 2, 3))
    engine.script(image, [ScriptedFace(face(), unit_vector(1)),
                          ScriptedFace(face(), unit_vector(2))])
    detect(DetectRequest(image=image, attributes=Attributes.ALL), engine=engine,
           decoder=PillowImageDecoder(SETTINGS), uow=uow, actor=ACTOR)
    [recorded] = uow.audit.committed
    e = recorded.event
    assert (e.action.value, e.outcome, e.actor) == ("face.detect", "success", ACTOR)
    assert e.scores == {"face_count": 2}
    assert e.input_digests == (sha(image),)
    assert (e.engine, e.model_version) == ("fake", "fake-1")


def test_a_refused_image_is_recorded_as_rejected_with_its_error_code() -> None:
    uow = FakeUnitOfWork()
    bad = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    with pytest.raises(InvalidImage):
        detect(DetectRequest(image=bad, attributes=Attributes.DEFAULT), engine=FakeEngine(),
               decoder=PillowImageDecoder(SETTINGS), uow=uow, actor=ACTOR)
    [recorded] = uow.audit.committed
    assert (recorded.event.outcome, recorded.event.reason) == ("rejected", "invalid_image")
    assert recorded.event.input_digests == (sha(bad),)


def test_compare_records_both_digests_the_threshold_and_the_best_similarity() -> None:
    engine, uow = FakeEngine(), FakeUnitOfWork()
    source, target = solid_image(color=(9, 9, 9)), solid_image(color=(8, 8, 8))
    engine.script(source, [ScriptedFace(face(), unit_vector(7))])
    engine.script(target, [ScriptedFace(face(), unit_vector(7)),
                           ScriptedFace(face(left=0.1), unit_vector(8))])
    compare(CompareRequest(source=source, target=target, similarity_threshold=80.0),
            engine=engine, decoder=PillowImageDecoder(SETTINGS), uow=uow, actor=ACTOR)
    [recorded] = uow.audit.committed
    e = recorded.event
    assert e.outcome == "match"
    assert e.input_digests == (sha(source), sha(target))
    assert e.scores["threshold"] == 80.0
    assert e.scores["best_similarity"] == pytest.approx(100.0)
    assert (e.scores["matched_faces"], e.scores["unmatched_faces"]) == (1, 1)


def test_compare_without_a_source_face_is_recorded_and_still_raises() -> None:
    uow = FakeUnitOfWork()
    source, target = solid_image(color=(5, 5, 5)), solid_image(color=(6, 6, 6))
    with pytest.raises(NoFaceInSource):
        compare(CompareRequest(source=source, target=target, similarity_threshold=80.0),
                engine=FakeEngine(), decoder=PillowImageDecoder(SETTINGS), uow=uow, actor=ACTOR)
    [recorded] = uow.audit.committed
    assert (recorded.event.outcome, recorded.event.reason) == ("rejected", "no_face_in_source")
