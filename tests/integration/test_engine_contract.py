"""One contract for every engine adapter.

The same assertions run on
- `local`: LocalEngine called directly;
- `rekognition`: RekognitionEngine -> real boto3 (SigV4, standard retries) -> our
  Rekognition emulator on a real HTTP server -> LocalEngine and the store;
- `fake`: FakeEngine, scripted for the same images, so the fake cannot drift.

Every emulator response the boto3 client receives is checked against botocore's
service model (tests/botocore_shapes.py) by an `after-call` hook.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from faceapi.adapters.engines.rekognition import RekognitionEngine
from faceapi.adapters.images import PillowImageDecoder, decode_image
from faceapi.config import Settings
from faceapi.domain.access import Actor
from faceapi.domain.audit import SYSTEM
from faceapi.domain.collections import CollectionExists, QualityFilter, UnindexedReason
from faceapi.domain.errors import (
    EngineAccessDenied,
    EngineThrottled,
    EngineUnavailable,
    ImageTooLarge,
    NoFaceInSource,
    NotFound,
    UnsupportedImageFormat,
)
from faceapi.domain.faces import Attributes, FaceDetail
from faceapi.entrypoints.web.api.deps import EXTENSION_KEY
from faceapi.entrypoints.web.app import create_app
from faceapi.entrypoints.web.emulator import control
from faceapi.entrypoints.web.emulator.collections import StoreCollections
from faceapi.entrypoints.web.emulator.operations import CONSENT_TAG
from faceapi.services.detect import DetectRequest, detect
from faceapi.services.ports import FaceCollections, FaceEngine
from tests.botocore_shapes import ShapeChecker, service_model
from tests.conftest import REPO
from tests.emulator_server import (
    LiveServer,
    api_key,
    key_session,
    rekognition_client,
    serve,
)
from tests.fakes import FakeEngine, ScriptedFace, face, unit_vector
from tests.fakes_audit import FakeUnitOfWork

# Images of the shared data set (see its IMAGE_NOTES.csv): two of one person, one of
# another, one with no face, one with two faces.
SAME_A = "deepface/tests/unit/dataset/img16.jpg"  # jack_dorsey
SAME_B = "deepface/tests/unit/dataset/img17.jpg"  # jack_dorsey
SAME_C = "deepface/tests/unit/dataset/img61.jpg"  # jack_dorsey
OTHER = "deepface/tests/unit/dataset/img46.jpg"  # katy_perry
NO_FACE = "mtcnn/tests/images/no-faces.jpg"
COUPLE = "deepface/tests/unit/dataset/couple.jpg"  # two faces

# Similarity threshold for "same person" in this contract: below what the engines
# give a same-person pair of these images, above what they give a different pair.
# Rekognition's default, which the local scale (version 2) keeps: FMR 1e-3.
THRESHOLD = 80.0


@dataclass
class Images:
    same_a: bytes
    same_b: bytes
    other: bytes
    no_face: bytes
    couple: bytes
    same_c: bytes


@pytest.fixture(scope="module")
def images() -> Images:
    from tests.conftest import shared_faces_dir

    root = shared_faces_dir()
    if not (root / "LABELS.csv").is_file():
        pytest.skip(f"shared face data set not found at {root} (set FACEAPI_FACES_DIR)")
    return Images(*(Path(root, name).read_bytes()
                    for name in (SAME_A, SAME_B, OTHER, NO_FACE, COUPLE, SAME_C)))


@pytest.fixture(scope="module")
def local_engine() -> Any:
    from faceapi.adapters.engines.local import LocalEngine

    engine = LocalEngine(Settings(env="test"))
    ok, why = engine.ready()
    if not ok:
        pytest.skip(f"local engine not ready: {why}")
    return engine


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, local_engine: Any) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("emulator")
    settings = Settings(env="test", data_dir=data_dir, log_format="json",
                        policies_dir=REPO / "policies")
    app = create_app(settings, engine=local_engine)
    live = serve(app)
    try:
        yield live
    finally:
        live.stop()


def remote_engine(live: LiveServer, role: str = "operator", **overrides: Any) -> RekognitionEngine:
    settings = Settings(env="test", engine="rekognition", aws_endpoint_url=live.url,
                        aws_max_attempts=3, aws_read_timeout=60.0, **overrides)
    engine = RekognitionEngine(settings, session=key_session(api_key(live.app, role)))
    checker = ShapeChecker()
    engine.client.meta.events.register("after-call.rekognition", checker)
    return engine


def scripted_fake(images: Images) -> FakeEngine:
    fake = FakeEngine()
    person = unit_vector(1)
    near = tuple(0.96 * a + 0.04 * b for a, b in zip(person, unit_vector(2), strict=True))
    fake.script(images.same_a, [ScriptedFace(face(), person)])
    fake.script(images.same_b, [ScriptedFace(face(), near)])
    nearer = tuple(0.97 * a + 0.03 * b for a, b in zip(person, unit_vector(6), strict=True))
    fake.script(images.same_c, [ScriptedFace(face(), nearer)])
    fake.script(images.other, [ScriptedFace(face(), unit_vector(3))])
    fake.script(images.couple, [ScriptedFace(face(left=0.1, size=0.3), unit_vector(4)),
                                ScriptedFace(face(left=0.6, size=0.3), unit_vector(5))])
    return fake


@pytest.fixture(params=["local", "rekognition", "fake"])
def engine(request: pytest.FixtureRequest, images: Images) -> FaceEngine:
    if request.param == "fake":
        return scripted_fake(images)
    if request.param == "local":
        local: FaceEngine = request.getfixturevalue("local_engine")
        return local
    live: LiveServer = request.getfixturevalue("emulator")
    return remote_engine(live)


SETTINGS = Settings(env="test")


def decoded(data: bytes) -> Any:
    return decode_image(data, SETTINGS)


def _valid_face(detail: FaceDetail) -> None:
    box = detail.bounding_box
    assert 0.0 <= box.left <= 1.0
    assert 0.0 <= box.top <= 1.0
    assert 0.0 < box.width <= 1.0
    assert 0.0 < box.height <= 1.0
    assert 0.0 <= detail.confidence <= 100.0


# --- analysis -------------------------------------------------------------------------

def test_detect_finds_the_one_face_of_a_portrait(engine: FaceEngine, images: Images) -> None:
    detection = engine.detect_faces(decoded(images.same_a), Attributes.DEFAULT)
    assert len(detection.faces) == 1
    _valid_face(detection.faces[0])
    assert detection.faces[0].confidence > 50.0


def test_detect_with_all_attributes_returns_pose_and_quality(engine: FaceEngine,
                                                               images: Images) -> None:
    detail = engine.detect_faces(decoded(images.same_a), Attributes.ALL).faces[0]
    if engine.name == "fake":
        assert detail.pose is not None
        return
    assert detail.pose is not None
    assert detail.quality is not None
    assert -180.0 <= detail.pose.yaw <= 180.0
    assert 0.0 <= detail.quality.sharpness <= 100.0
    assert detail.landmarks, "ALL includes landmarks"
    assert detail.eyes_open is not None
    assert detail.mouth_open is not None


def test_detect_finds_no_face_where_there_is_none(engine: FaceEngine, images: Images) -> None:
    assert engine.detect_faces(decoded(images.no_face), Attributes.DEFAULT).faces == ()


def test_detect_finds_both_faces_of_a_couple(engine: FaceEngine, images: Images) -> None:
    faces = engine.detect_faces(decoded(images.couple), Attributes.DEFAULT).faces
    assert len(faces) == 2
    for detail in faces:
        _valid_face(detail)


def test_compare_matches_the_same_person(engine: FaceEngine, images: Images) -> None:
    result = engine.compare_faces(decoded(images.same_a), decoded(images.same_b), THRESHOLD)
    assert len(result.face_matches) == 1
    assert result.unmatched_faces == ()
    assert THRESHOLD <= result.face_matches[0].similarity <= 100.0
    _valid_face(result.source_face)


def test_compare_does_not_match_another_person(engine: FaceEngine, images: Images) -> None:
    result = engine.compare_faces(decoded(images.same_a), decoded(images.other), THRESHOLD)
    assert result.face_matches == ()
    assert len(result.unmatched_faces) == 1


def test_compare_reports_every_target_face(engine: FaceEngine, images: Images) -> None:
    result = engine.compare_faces(decoded(images.same_a), decoded(images.couple), 0.0)
    assert len(result.face_matches) + len(result.unmatched_faces) == 2
    similarities = [m.similarity for m in result.face_matches]
    assert similarities == sorted(similarities, reverse=True)


def test_compare_without_a_source_face_is_no_face_in_source(engine: FaceEngine,
                                                             images: Images) -> None:
    with pytest.raises(NoFaceInSource):
        engine.compare_faces(decoded(images.no_face), decoded(images.same_a), THRESHOLD)


def test_a_bad_image_is_refused_before_any_engine_work(engine: FaceEngine) -> None:
    # FakeUnitOfWork carries only the audit log, all that detect touches.
    uow: Any = FakeUnitOfWork()
    with pytest.raises(UnsupportedImageFormat):
        detect(DetectRequest(image=b"this is not an image", attributes=Attributes.DEFAULT),
               engine=engine, decoder=PillowImageDecoder(SETTINGS), uow=uow, actor=SYSTEM)
    assert [r.event.outcome for r in uow.audit.committed] == ["rejected"]


def test_capabilities_name_the_engine_and_what_it_never_returns(engine: FaceEngine) -> None:
    caps = engine.capabilities()
    assert caps.engine == engine.name
    assert "AgeRange" in caps.unsupported
    assert "BoundingBox" in caps.attributes


# --- the remote path's own failure modes ------------------------------------------------

def test_remote_engine_reports_a_corrupt_image_as_unsupported_format(
        emulator: LiveServer, images: Images) -> None:
    engine = remote_engine(emulator)
    good = decoded(images.same_a)
    corrupt = type(good)(data=images.same_a[:200], sha256="x", format="jpeg",
                         pixels=good.pixels)
    with pytest.raises(UnsupportedImageFormat):
        engine.detect_faces(corrupt, Attributes.DEFAULT)


def _count_calls(engine: RekognitionEngine) -> list[str]:
    sent: list[str] = []
    engine.client.meta.events.register(
        "before-call.rekognition", lambda model, **_: sent.append(model.name))
    return sent


def test_remote_engine_refuses_formats_rekognition_does_not_take_before_calling(
        emulator: LiveServer, images: Images) -> None:
    engine = remote_engine(emulator)
    sent = _count_calls(engine)
    good = decoded(images.same_a)
    gif = type(good)(data=b"GIF89a" + b"\0" * 32, sha256="x", format="gif", pixels=good.pixels)
    with pytest.raises(UnsupportedImageFormat):
        engine.detect_faces(gif, Attributes.DEFAULT)
    assert sent == []


def test_remote_engine_refuses_images_over_5_mb_before_calling(
        emulator: LiveServer, images: Images) -> None:
    engine = remote_engine(emulator)
    sent = _count_calls(engine)
    good = decoded(images.same_a)
    big = type(good)(data=images.same_a + b"\0" * (5 * 1024 * 1024), sha256="x",
                     format="jpeg", pixels=good.pixels)
    with pytest.raises(ImageTooLarge):
        engine.compare_faces(good, big, THRESHOLD)
    assert sent == []


def test_throttling_is_retried_by_boto3_and_then_succeeds(emulator: LiveServer,
                                                          images: Images) -> None:
    engine = remote_engine(emulator)
    control(emulator.app).inject("ThrottlingException", times=2, operation="DetectFaces")
    try:
        detection = engine.detect_faces(decoded(images.same_a), Attributes.DEFAULT)
    finally:
        control(emulator.app).clear()
    assert len(detection.faces) == 1


def test_throttling_after_every_attempt_is_engine_throttled_with_retry_after(
        emulator: LiveServer, images: Images) -> None:
    engine = remote_engine(emulator)
    control(emulator.app).inject("ThrottlingException", times=3, operation="DetectFaces")
    try:
        with pytest.raises(EngineThrottled) as caught:
            engine.detect_faces(decoded(images.same_a), Attributes.DEFAULT)
    finally:
        control(emulator.app).clear()
    assert caught.value.retry_after is not None
    assert caught.value.retry_after >= 1
    assert "3 attempts" in caught.value.message


def test_a_key_whose_role_may_not_call_the_operation_is_access_denied(
        emulator: LiveServer, images: Images) -> None:
    engine = remote_engine(emulator, role="auditor")
    with pytest.raises(EngineAccessDenied):
        engine.detect_faces(decoded(images.same_a), Attributes.DEFAULT)


def test_an_unknown_key_is_access_denied(emulator: LiveServer, images: Images) -> None:
    settings = Settings(env="test", engine="rekognition", aws_endpoint_url=emulator.url,
                        aws_max_attempts=1)
    bogus = ("A" * 8, hashlib.sha256(b"x").hexdigest()[:40])
    engine = RekognitionEngine(settings, session=key_session(bogus))
    with pytest.raises(EngineAccessDenied):
        engine.detect_faces(decoded(images.same_a), Attributes.DEFAULT)


def test_an_unreachable_endpoint_is_engine_unavailable_and_not_ready(images: Images) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(env="test", engine="rekognition",
                        aws_endpoint_url=f"http://127.0.0.1:{port}", aws_max_attempts=2,
                        aws_connect_timeout=0.5, aws_read_timeout=1.0)
    engine = RekognitionEngine(settings, session=key_session(("x", "y")))
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="unreachable"):
        engine.detect_faces(decoded(images.same_a), Attributes.DEFAULT)
    assert time.monotonic() - started < 10, "bounded attempts and timeouts"
    ok, why = engine.ready()
    assert not ok
    assert "unreachable" in why


def test_ready_says_yes_when_the_endpoint_answers(emulator: LiveServer) -> None:
    engine = remote_engine(emulator)
    assert engine.ready() == (True, "rekognition reachable")


def test_every_operation_the_contract_uses_exists_in_botocores_model() -> None:
    names = set(service_model().operation_names)
    assert {"DetectFaces", "CompareFaces", "CreateCollection", "IndexFaces",
            "SearchFacesByImage", "SearchFaces", "ListFaces", "DeleteFaces",
            "DeleteCollection", "DescribeCollection", "ListCollections"} <= names




# --- collections ------------------------------------------------------------------------
# Local: StoreCollections (local engine + store + search index + collection services)
# called directly. Rekognition: RekognitionEngine -> boto3 -> emulator -> StoreCollections.
# Fake: StoreCollections on the scripted FakeEngine.
# Through the emulator collections are an operator's tools (faceapi/domain/access.py).

SEARCH_THRESHOLD = 80.0  # photo_tagging's minimum, the policy emulator searches run under


@dataclass
class CollectionPaths:
    manage: FaceCollections
    search: FaceCollections
    new_collection: Callable[[], str]


def _actor(role: str) -> Actor:
    return Actor(role=role, key_id=f"test-{role}")


def _store_collections(app: Flask, role: str, *, consent_required: bool = True
                       ) -> StoreCollections:
    d = app.extensions[EXTENSION_KEY]
    return StoreCollections(use_cases=d.use_cases, actor=_actor(role),
                            consent_required=consent_required)


@pytest.fixture(scope="module")
def fake_app(tmp_path_factory: pytest.TempPathFactory, images: Images) -> Flask:
    """The store-backed collections on the scripted FakeEngine."""
    settings = Settings(env="test", data_dir=tmp_path_factory.mktemp("fake"),
                        log_format="json", policies_dir=REPO / "policies")
    return create_app(settings, engine=scripted_fake(images))


@pytest.fixture(params=["local", "rekognition", "fake"])
def collections(request: pytest.FixtureRequest) -> CollectionPaths:
    def fresh_id() -> str:
        return f"c-{uuid.uuid4().hex[:10]}"

    if request.param in ("local", "fake"):
        app: Flask = (request.getfixturevalue("emulator").app if request.param == "local"
                      else request.getfixturevalue("fake_app"))

        def make_local() -> str:
            collection_id = fresh_id()
            _store_collections(app, "operator", consent_required=False) \
                .create_collection(collection_id)
            return collection_id

        port = _store_collections(app, "operator")
        return CollectionPaths(port, port, make_local)

    emulator: LiveServer = request.getfixturevalue("emulator")
    manager = remote_engine(emulator, "operator")
    raw = rekognition_client(emulator.url, api_key(emulator.app, "operator"))

    def make_remote() -> str:
        # Subjects indexed through an SDK cannot carry a consent record, so the
        # operator creates the collection with the documented opt-out tag.
        collection_id = fresh_id()
        raw.create_collection(CollectionId=f"faceapi-{collection_id}",
                              Tags={CONSENT_TAG: "false"})
        return collection_id

    return CollectionPaths(manager, manager, make_remote)


def test_a_collection_is_created_described_listed_and_deleted(
        collections: CollectionPaths) -> None:
    collection_id = f"c-{uuid.uuid4().hex[:10]}"
    created = collections.manage.create_collection(collection_id)
    assert created.collection_id == collection_id
    assert created.face_model_version
    info = collections.manage.describe_collection(collection_id)
    assert info.face_count == 0
    assert info.created_at is not None
    assert collection_id in collections.manage.list_collections(4096).collection_ids
    collections.manage.delete_collection(collection_id)
    with pytest.raises(NotFound):
        collections.manage.describe_collection(collection_id)


def test_creating_an_existing_collection_is_refused(collections: CollectionPaths) -> None:
    collection_id = collections.new_collection()
    with pytest.raises(CollectionExists):
        collections.manage.create_collection(collection_id)


def test_an_unknown_collection_is_not_found_by_every_operation(
        collections: CollectionPaths, images: Images) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    calls: list[Callable[[], object]] = [
        lambda: collections.manage.describe_collection(missing),
        lambda: collections.manage.delete_collection(missing),
        lambda: collections.manage.list_faces(missing),
        lambda: collections.manage.index_faces(missing, decoded(images.same_a), "jack"),
        lambda: collections.manage.delete_faces(missing, [str(uuid.uuid4())]),
        lambda: collections.search.search_faces_by_image(missing, decoded(images.same_b),
                                                         SEARCH_THRESHOLD, 5),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()


def test_indexed_faces_are_listed_searched_and_deleted(collections: CollectionPaths,
                                                       images: Images) -> None:
    collection_id = collections.new_collection()
    jack = collections.manage.index_faces(collection_id, decoded(images.same_a), "jack")
    jack2 = collections.manage.index_faces(collection_id, decoded(images.same_c), "jack")
    katy = collections.manage.index_faces(collection_id, decoded(images.other), "katy")
    for result in (jack, jack2, katy):
        assert len(result.records) == 1
        assert result.unindexed == ()
        assert result.face_model_version
    assert jack.records[0].face.external_image_id == "jack"
    _valid_face(jack.records[0].detail)

    listed = collections.manage.list_faces(collection_id)
    assert {f.face_id for f in listed.faces} == {
        r.records[0].face.face_id for r in (jack, jack2, katy)}
    assert collections.manage.describe_collection(collection_id).face_count == 3

    found = collections.search.search_faces_by_image(
        collection_id, decoded(images.same_b), SEARCH_THRESHOLD, 5)
    assert found.searched_face is not None
    assert [m.face.external_image_id for m in found.matches] == ["jack", "jack"]
    assert all(m.similarity >= SEARCH_THRESHOLD for m in found.matches)

    by_id = collections.search.search_faces(collection_id, jack.records[0].face.face_id,
                                            SEARCH_THRESHOLD, 5)
    assert [m.face.face_id for m in by_id.matches] == [jack2.records[0].face.face_id]

    bogus = str(uuid.uuid4())
    deleted = collections.manage.delete_faces(
        collection_id, [katy.records[0].face.face_id, bogus])
    assert deleted.deleted == (katy.records[0].face.face_id,)
    assert deleted.not_deleted == (bogus,)
    assert len(collections.manage.list_faces(collection_id).faces) == 2


def test_index_keeps_the_largest_faces_up_to_max_faces(collections: CollectionPaths,
                                                       images: Images) -> None:
    collection_id = collections.new_collection()
    result = collections.manage.index_faces(collection_id, decoded(images.couple), "pair",
                                            max_faces=1, quality_filter=QualityFilter.NONE)
    assert len(result.records) == 1
    assert [u.reasons for u in result.unindexed] == [(UnindexedReason.EXCEEDS_MAX_FACES,)]


def test_an_image_without_a_face_indexes_nothing(collections: CollectionPaths,
                                                 images: Images) -> None:
    collection_id = collections.new_collection()
    result = collections.manage.index_faces(collection_id, decoded(images.no_face), "nobody")
    assert result.records == ()
    assert result.unindexed == ()


def test_searching_with_an_image_without_a_face_is_no_face_in_source(
        collections: CollectionPaths, images: Images) -> None:
    collection_id = collections.new_collection()
    collections.manage.index_faces(collection_id, decoded(images.same_a), "jack")
    with pytest.raises(NoFaceInSource):
        collections.search.search_faces_by_image(collection_id, decoded(images.no_face),
                                                 SEARCH_THRESHOLD, 5)


def test_a_forked_worker_gets_its_own_client(emulator: LiveServer, images: Images) -> None:
    import os

    engine = remote_engine(emulator)
    assert engine.ready()[0]
    parent_client = id(engine.client)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a gunicorn worker sees after preload
        try:
            fresh = id(engine.client) != parent_client
            rechecks = engine.ready() == (True, "rekognition reachable")
            detected = len(engine.detect_faces(decoded(images.same_a),
                                               Attributes.DEFAULT).faces)
            os.write(write_end, f"{fresh} {rechecks} {detected}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as answer:
        assert answer.read() == "True True 1"
