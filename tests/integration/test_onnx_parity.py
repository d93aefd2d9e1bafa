"""The onnx descriptor runtime gives dlib's answers: on every face of the fixture images
the converted ResNet's descriptor is within 1e-5 of dlib's own (compute_face_descriptor
on the image and the 68-point shape, what the dlib runtime calls), no comparison changes
its decision at any threshold of a shipped policy, and the model version recorded on
templates is the same for both runtimes."""

from __future__ import annotations

import itertools
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlib
import numpy as np
import pytest

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local.detection import RawFace, find_faces
from faceapi.adapters.engines.local.engine import CHIP_PADDING
from faceapi.adapters.images import decode_image
from faceapi.adapters.policy_files import load_policies
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.domain.errors import FaceApiError
from faceapi.domain.policies import PolicySet

FACES = Path(__file__).resolve().parent.parent / "data" / "faces"
POLICIES = Path(__file__).resolve().parents[2] / "policies"
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Faces:
    pixels: list[np.ndarray]
    faces: list[list[RawFace]]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(env="test", image_formats=KNOWN_FORMATS,
                    data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def onnx_engine(settings: Settings) -> LocalEngine:
    engine = LocalEngine(settings)
    assert engine.descriptor_runtime == "onnx"
    return engine


@pytest.fixture(scope="module")
def dlib_engine(settings: Settings) -> LocalEngine:
    engine = LocalEngine(settings.with_overrides(descriptor_runtime="dlib"))
    assert engine.descriptor_runtime == "dlib"
    return engine


@pytest.fixture(scope="module")
def fixture_faces(onnx_engine: LocalEngine, settings: Settings) -> Faces:
    models: Any = onnx_engine._models
    pixels, faces = [], []
    for path in sorted(p for p in FACES.rglob("*") if p.is_file() and p.suffix != ".md"):
        try:
            image = decode_image(path.read_bytes(), settings)
        except FaceApiError:
            continue  # the broken fixtures
        found = find_faces(image.pixels, models, upsample=1, max_side=1600,
                           orientation_search=True)
        if found.faces:
            pixels.append(found.pixels)
            faces.append(list(found.faces))
    assert sum(len(f) for f in faces) >= 15
    return Faces(pixels, faces)


def reference(engine: LocalEngine, pixels: np.ndarray, face: RawFace) -> np.ndarray:
    """dlib's descriptor, straight from dlib."""
    models: Any = engine._models
    return np.array(models.recognizer.compute_face_descriptor(
        pixels, face.shape68, 1, CHIP_PADDING), dtype=np.float64)


@pytest.fixture(scope="module")
def both(fixture_faces: Faces, onnx_engine: LocalEngine,
         dlib_engine: LocalEngine) -> tuple[np.ndarray, np.ndarray]:
    ref, onnx = [], []
    for pixels, faces in zip(fixture_faces.pixels, fixture_faces.faces, strict=True):
        ref += [reference(dlib_engine, pixels, f) for f in faces]
        onnx += onnx_engine.descriptors(pixels, faces)  # the whole image in one batch
    return np.array(ref), np.array(onnx, dtype=np.float64)


def test_onnx_descriptors_are_within_1e_5_of_dlibs(both: tuple[np.ndarray, np.ndarray]) -> None:
    ref, onnx = both
    assert ref.shape == onnx.shape
    assert ref.shape[1] == 128
    worst = float(np.abs(ref - onnx).max())
    assert worst <= TOLERANCE, worst
    # Not trivially equal: float32 sums in another order differ in the last bits.
    assert np.linalg.norm(ref, axis=1).min() > 0.1


def test_the_dlib_runtime_is_dlib_itself(fixture_faces: Faces, dlib_engine: LocalEngine) -> None:
    pixels, faces = fixture_faces.pixels[0], fixture_faces.faces[0]
    assert dlib_engine.descriptors(pixels, faces) == [
        tuple(reference(dlib_engine, pixels, f).tolist()) for f in faces]


def thresholds(policies: PolicySet) -> list[float]:
    """Every similarity a shipped policy decides at: min_similarity and band edges."""
    found = set()
    for policy in policies.values():
        found.add(policy.min_similarity)
        if policy.human_review.band is not None:
            found.update(policy.human_review.band)
    return sorted(found)


def test_no_decision_changes_at_any_shipped_policy_threshold(
        both: tuple[np.ndarray, np.ndarray], onnx_engine: LocalEngine) -> None:
    ref, onnx = both
    levels = thresholds(load_policies(POLICIES))
    assert 80.0 in levels  # the shipped policies were read
    assert len(levels) >= 2
    pairs = list(itertools.combinations(range(len(ref)), 2))
    score = onnx_engine.similarity
    for i, j in pairs:
        s_ref = score(tuple(ref[i]), tuple(ref[j]))
        s_onnx = score(tuple(onnx[i]), tuple(onnx[j]))
        assert abs(s_ref - s_onnx) < 1e-3, (i, j, s_ref, s_onnx)
        for level in levels:
            assert (s_ref >= level) == (s_onnx >= level), (i, j, level, s_ref, s_onnx)
    # The fixtures hold same-person pairs above the thresholds and others below.
    sims = [score(tuple(onnx[i]), tuple(onnx[j])) for i, j in pairs]
    assert max(sims) >= max(levels)
    assert min(sims) < min(levels)


def test_compare_faces_answers_the_same_on_both_runtimes(
        onnx_engine: LocalEngine, dlib_engine: LocalEngine, settings: Settings) -> None:
    source = decode_image((FACES / "deepface/tests/unit/dataset/img5.jpg").read_bytes(),
                          settings)
    target = decode_image((FACES / "face-api.js/examples/images/bbt3.jpg").read_bytes(),
                          settings)
    same = decode_image((FACES / "deepface/tests/unit/dataset/img6.jpg").read_bytes(),
                        settings)
    for tgt in (target, same):
        a = onnx_engine.compare_faces(source, tgt, 60.0)
        b = dlib_engine.compare_faces(source, tgt, 60.0)
        assert [m.face for m in a.face_matches] == [m.face for m in b.face_matches]
        assert a.unmatched_faces == b.unmatched_faces
        for ma, mb in zip(a.face_matches, b.face_matches, strict=True):
            assert ma.similarity == pytest.approx(mb.similarity, abs=1e-3)
    assert len(onnx_engine.compare_faces(source, same, 60.0).face_matches) == 1


def test_the_model_version_on_templates_does_not_depend_on_the_runtime(
        onnx_engine: LocalEngine, dlib_engine: LocalEngine) -> None:
    assert onnx_engine.model_version == dlib_engine.model_version
    assert onnx_engine.capabilities() == dlib_engine.capabilities()


def test_a_face_alone_and_in_a_batch_gets_the_same_descriptor(
        fixture_faces: Faces, onnx_engine: LocalEngine) -> None:
    index = max(range(len(fixture_faces.faces)), key=lambda k: len(fixture_faces.faces[k]))
    pixels, faces = fixture_faces.pixels[index], fixture_faces.faces[index]
    assert len(faces) >= 5
    batch = np.array(onnx_engine.descriptors(pixels, faces))
    alone = np.array([onnx_engine.descriptors(pixels, [f])[0] for f in faces])
    assert float(np.abs(batch - alone).max()) <= 1e-6


def test_several_large_faces_of_one_image_get_dlibs_single_face_descriptors(
        onnx_engine: LocalEngine, dlib_engine: LocalEngine, settings: Settings) -> None:
    # Two big faces side by side (a portrait upscaled 3x, twice): dlib cuts a large
    # face's chip through a down-sampling pyramid, and cutting several chips in one call
    # builds that pyramid over all of them, which gave other chips (difference 4e-3 on
    # the shared set's couple.jpg). Each face must get the chip dlib cuts for it alone.
    image = decode_image((FACES / "deepface/tests/unit/dataset/img5.jpg").read_bytes(),
                         settings)
    big = np.kron(image.pixels, np.ones((3, 3, 1), dtype=np.uint8))
    pixels = np.ascontiguousarray(np.hstack([big, big[:, ::-1]]))
    found = find_faces(pixels, onnx_engine._models, upsample=0, max_side=1600,
                       orientation_search=False)
    faces = list(found.faces)
    assert len(faces) == 2
    assert min(f.width for f in faces) > 300
    batch = np.array(onnx_engine.descriptors(found.pixels, faces))
    ref = np.array([reference(dlib_engine, found.pixels, f) for f in faces])
    assert float(np.abs(batch - ref).max()) <= TOLERANCE


def test_five_point_alignment_gets_dlibs_descriptors_too(
        fixture_faces: Faces, settings: Settings, dlib_engine: LocalEngine) -> None:
    engine = LocalEngine(settings, alignment="5")
    models: Any = engine._models
    worst = 0.0
    for pixels, faces in zip(fixture_faces.pixels[:4], fixture_faces.faces[:4], strict=True):
        onnx = np.array(engine.descriptors(pixels, faces))
        ref = np.array([models.recognizer.compute_face_descriptor(
            pixels, models.shape5(pixels, f.dlib_rect()), 1, CHIP_PADDING) for f in faces])
        worst = max(worst, float(np.abs(onnx - ref).max()))
    assert worst <= TOLERANCE


def test_more_threads_give_the_same_descriptors(
        fixture_faces: Faces, settings: Settings, onnx_engine: LocalEngine) -> None:
    two = LocalEngine(settings.with_overrides(descriptor_threads=2))
    pixels, faces = fixture_faces.pixels[0], fixture_faces.faces[0]
    a = np.array(two.descriptors(pixels, faces))
    b = np.array(onnx_engine.descriptors(pixels, faces))
    assert float(np.abs(a - b).max()) <= 1e-6


def _child_descriptor(engine: LocalEngine, pixels: np.ndarray,
                      face_rect: tuple[int, int, int, int], queue: Any) -> None:
    models: Any = engine._models
    shape = models.shape68(pixels, dlib.rectangle(*face_rect))
    face = RawFace(left=0, top=0, right=1, bottom=1, score=1.0, confidence=99.0,
                   shape68=shape, points=np.zeros((68, 2)))
    descriptor = engine.descriptors(pixels, [face])[0]
    runtime: Any = engine._onnx
    queue.put((descriptor, runtime.session_pid))


def test_a_forked_worker_makes_its_own_session_and_the_same_descriptors(
        fixture_faces: Faces, onnx_engine: LocalEngine) -> None:
    pixels, face = fixture_faces.pixels[0], fixture_faces.faces[0][0]
    parent = onnx_engine.descriptors(pixels, [face])[0]  # the parent's session exists
    runtime: Any = onnx_engine._onnx
    parent_pid = runtime.session_pid
    rect = face.shape68.rect
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_descriptor, args=(
        onnx_engine, pixels, (rect.left(), rect.top(), rect.right(), rect.bottom()), queue))
    child.start()
    descriptor, child_session_pid = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert child_session_pid == child.pid != parent_pid
    assert descriptor == parent
