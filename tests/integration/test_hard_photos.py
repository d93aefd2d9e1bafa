"""FACEAPI_DETECT_FALLBACK: hard-photo fallbacks (contrast, roll, upsample, cnn) that run
only when normal detection found no face, so photos HOG already sees keep their answers
(docs/engines.md, "Hard photos"; bench/degraded.py measures them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local import detection as det
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, ConfigError, Settings

FACES = Path(__file__).resolve().parent.parent / "data" / "faces"
PORTRAIT = "deepface/tests/unit/dataset/img5.jpg"
GROUP = "face-api.js/examples/images/bbt3.jpg"
IVAN = "mtcnn/tests/images/ivan.jpg"
EINSTEIN = "CompreFace/embedding-calculator/src/services/imgtools/test/files/einstein.jpeg"
NO_FACE = "mtcnn/tests/images/no-faces.jpg"
SHELDON = "face-api.js/examples/images/sheldon/sheldon1.png"
ALL = ("contrast", "roll", "upsample", "cnn")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(env="test", image_formats=KNOWN_FORMATS,
                    data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def engine(settings: Settings) -> LocalEngine:
    # With every fallback configured, so the engine's models carry the onnx CNN.
    return LocalEngine(settings.with_overrides(detect_fallback=("hard",)))


def pixels(name: str, settings: Settings) -> Any:
    return decode_image((FACES / name).read_bytes(), settings).pixels


def find(engine: LocalEngine, image: Any, fallbacks: tuple[str, ...]) -> det.FoundFaces:
    return det.find_faces(image, engine._models, upsample=1, max_side=1600,
                          orientation_search=True, fallbacks=fallbacks)


def upright_descriptor(engine: LocalEngine, image: Any) -> tuple[float, ...]:
    found = find(engine, image, ())
    return engine.descriptors(found.pixels, [found.faces[0]])[0]


def test_fallbacks_are_off_by_default_and_hard_means_all_four() -> None:
    assert Settings().detect_fallbacks == ()
    assert Settings(detect_fallback=("hard",)).detect_fallbacks == ALL
    # Order is fixed by the code, not by the setting's spelling.
    assert Settings(detect_fallback=("upsample", "contrast")).detect_fallbacks == (
        "contrast", "upsample")


def test_an_unknown_fallback_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="FACEAPI_DETECT_FALLBACK"):
        Settings.from_env({"FACEAPI_DETECT_FALLBACK": "contrast,magic"})


@pytest.mark.parametrize("name", [PORTRAIT, GROUP, EINSTEIN])
def test_photos_hog_already_sees_get_the_same_faces_with_fallbacks_on(
        engine: LocalEngine, settings: Settings, name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    image = pixels(name, settings)
    plain = find(engine, image, ())
    calls: list[str] = []
    real = det.fallback_faces

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(det, "fallback_faces", spy)
    hard = find(engine, image, ALL)
    assert calls == []  # the fallbacks never ran: no cost in the common case
    assert [(f.left, f.top, f.right, f.bottom, f.score) for f in hard.faces] == [
        (f.left, f.top, f.right, f.bottom, f.score) for f in plain.faces]
    assert hard.orientation_correction == plain.orientation_correction


def test_a_face_rolled_40_degrees_is_found_by_the_roll_fallback_and_still_matches(
        engine: LocalEngine, settings: Settings) -> None:
    image = pixels(IVAN, settings)
    h, w = image.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 40, 1.0)
    rolled = np.ascontiguousarray(cv2.warpAffine(image, turn, (w, h)))
    assert find(engine, rolled, ()).faces == ()
    found = find(engine, rolled, ("roll",))
    assert len(found.faces) == 1
    face = found.faces[0]
    # Box and landmarks are in the rolled image's own pixels (mapped back from the
    # turned copy): the eyes' centre lies inside the box.
    eyes = face.points[36:48].mean(axis=0)
    assert face.left < eyes[0] < face.right
    assert face.top < eyes[1] < face.bottom
    (vector,) = engine.descriptors(found.pixels, [face])
    assert engine.similarity(vector, upright_descriptor(engine, image)) >= 95.0


def test_a_dark_noisy_face_is_found_by_the_contrast_fallback(
        engine: LocalEngine, settings: Settings) -> None:
    image = pixels(EINSTEIN, settings)
    noise = np.random.default_rng(1).normal(0, 6, image.shape)
    dark = np.ascontiguousarray(np.clip(image * 0.1 + noise, 0, 255).astype(np.uint8))
    assert find(engine, dark, ()).faces == ()
    found = find(engine, dark, ("contrast",))
    assert len(found.faces) == 1
    # The descriptor is computed from the original (dark) pixels, not the equalised ones.
    assert found.pixels is dark or np.array_equal(found.pixels, dark)


def test_an_image_without_a_face_stays_without_one(
        engine: LocalEngine, settings: Settings) -> None:
    found = find(engine, pixels(NO_FACE, settings), ALL)
    assert found.faces == ()
    assert found.orientation_correction is None


def test_the_engine_reads_the_setting(settings: Settings) -> None:
    image = pixels(IVAN, settings)
    h, w = image.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 40, 1.0)
    data = cv2.imencode(".png", cv2.cvtColor(cv2.warpAffine(image, turn, (w, h)),
                                             cv2.COLOR_RGB2BGR))[1].tobytes()
    decoded = decode_image(data, settings)
    hard = LocalEngine(settings.with_overrides(detect_fallback=("hard",)))
    _, faces = hard.embed_faces(decoded)
    assert len(faces) == 1


@pytest.mark.parametrize("shape", [(20, 3000, 3), (3000, 17, 3), (16, 16, 3), (40, 40),
                                   (1200, 1600, 3)])
def test_odd_and_large_face_less_images_run_every_fallback_without_error(
        engine: LocalEngine, shape: tuple[int, ...]) -> None:
    noise = np.random.default_rng(3).integers(0, 255, shape, dtype=np.uint8)
    found = find(engine, noise, ALL)
    assert found.faces == ()


def test_a_masked_face_hog_misses_is_found_by_the_cnn_fallback_near_hogs_clean_box(
        engine: LocalEngine, settings: Settings) -> None:
    image = pixels(SHELDON, settings)
    clean = find(engine, image, ())
    (face,) = clean.faces
    # The lower face (jaw points 2-14 up to the nose bridge) covered, as bench/degraded.py
    # masks it.
    masked = image.copy()
    polygon = np.vstack([face.points[2:15], face.points[28:29]]).round().astype(np.int32)
    cv2.fillPoly(masked, [polygon], (70, 110, 160))
    assert find(engine, masked, ("contrast", "roll", "upsample")).faces == ()
    found = find(engine, masked, ("cnn",))
    (cnn_face,) = found.faces
    inter = (max(0.0, min(face.right, cnn_face.right) - max(face.left, cnn_face.left))
             * max(0.0, min(face.bottom, cnn_face.bottom) - max(face.top, cnn_face.top)))
    assert inter / (face.area + cnn_face.area - inter) >= 0.7
    # Scored on the CNN's own confidence map, not HOG's.
    assert cnn_face.confidence == pytest.approx(det.score_to_confidence(cnn_face.score, "cnn"))
    assert cnn_face.confidence > 50.0
