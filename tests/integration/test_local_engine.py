"""The local dlib engine on the small licensed fixtures in tests/data/faces."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import botocore.loaders
import numpy as np
import pytest
from PIL import Image

from faceapi.adapters.engines.local import LocalEngine
from faceapi.adapters.engines.local.similarity import CALIBRATION_FILE, SimilarityMap
from faceapi.adapters.images import decode_image, sha256_hex
from faceapi.config import KNOWN_FORMATS, Settings
from faceapi.domain.errors import InvalidParameter, NoFaceInSource
from faceapi.domain.faces import Attributes, BoundingBox, OrientationCorrection
from faceapi.domain.images import DecodedImage
from faceapi.services.ports import FaceEngine

FACES = Path(__file__).resolve().parent.parent / "data" / "faces"
DEEPFACE = "deepface/tests/unit/dataset"
FACEAPI = "face-api.js/examples/images"
EINSTEIN = "CompreFace/embedding-calculator/src/services/imgtools/test/files/einstein"
SETTINGS = Settings(env="test", image_formats=KNOWN_FORMATS)


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return LocalEngine(SETTINGS)


def load(relative: str) -> DecodedImage:
    return decode_image((FACES / relative).read_bytes(), SETTINGS)


def from_pixels(pixels: np.ndarray) -> DecodedImage:
    data = np.ascontiguousarray(pixels, dtype=np.uint8)
    return DecodedImage(data=b"", sha256=sha256_hex(data.tobytes()), format="png", pixels=data)


def test_the_local_engine_is_a_face_engine(engine: LocalEngine) -> None:
    port: FaceEngine = engine
    assert port.name == "local"
    assert port.ready() == (True, "models loaded")
    assert port.model_version.startswith("dlib-20.")
    assert port.model_version.endswith("/resnet_v1/hog/align68/jitter1")
    assert port.template_version.endswith("/resnet_v1/align68/jitter1")


def test_a_single_face_photo_gives_one_face_with_a_box_inside_the_image(
        engine: LocalEngine) -> None:
    detection = engine.detect_faces(load(f"{DEEPFACE}/img5.jpg"), Attributes.DEFAULT)
    assert len(detection.faces) == 1
    face = detection.faces[0]
    box = face.bounding_box
    assert 0.0 <= box.left < box.left + box.width <= 1.0
    assert 0.0 <= box.top < box.top + box.height <= 1.0
    assert face.confidence > 95.0
    assert face.width_px > 50
    assert face.height_px > 50
    assert detection.orientation_correction == OrientationCorrection.ROTATE_0


@pytest.mark.parametrize("relative", ["face-api.js/test/images/white.png",
                                      "mtcnn/tests/images/no-faces.jpg"])
def test_images_without_a_human_face_give_no_faces(engine: LocalEngine, relative: str) -> None:
    detection = engine.detect_faces(load(relative), Attributes.ALL)
    assert detection.faces == ()
    assert detection.orientation_correction is None


def test_default_attributes_are_box_confidence_five_landmarks_pose_and_quality(
        engine: LocalEngine) -> None:
    face = engine.detect_faces(load(f"{DEEPFACE}/img6.jpg"), Attributes.DEFAULT).faces[0]
    assert [lm.type for lm in face.landmarks] == [
        "eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"]
    assert face.pose is not None
    assert face.quality is not None
    assert 0.0 <= face.quality.brightness <= 100.0
    assert 0.0 <= face.quality.sharpness <= 100.0
    assert face.eyes_open is None
    assert face.mouth_open is None


def test_all_attributes_give_every_rekognition_landmark_type_and_eyes_and_mouth(
        engine: LocalEngine) -> None:
    model = botocore.loaders.Loader().load_service_model("rekognition", "service-2")
    rekognition_types = model["shapes"]["LandmarkType"]["enum"]
    face = engine.detect_faces(load(f"{DEEPFACE}/img6.jpg"), Attributes.ALL).faces[0]
    assert sorted(lm.type for lm in face.landmarks) == sorted(rekognition_types)
    assert all(0.0 <= lm.x <= 1.0 and 0.0 <= lm.y <= 1.0 for lm in face.landmarks)
    assert face.eyes_open is not None
    assert face.eyes_open.value is True
    assert 50.0 <= face.eyes_open.confidence <= 100.0
    assert face.mouth_open is not None


def test_left_landmarks_are_on_the_image_left_and_the_chin_below_the_nose(
        engine: LocalEngine) -> None:
    face = engine.detect_faces(load(f"{DEEPFACE}/img5.jpg"), Attributes.ALL).faces[0]
    at = {lm.type: lm for lm in face.landmarks}
    assert at["eyeLeft"].x < at["nose"].x < at["eyeRight"].x
    assert at["mouthLeft"].x < at["mouthRight"].x
    assert at["upperJawlineLeft"].x < at["chinBottom"].x < at["upperJawlineRight"].x
    assert at["eyeLeft"].y < at["nose"].y < at["mouthUp"].y < at["mouthDown"].y
    assert at["mouthDown"].y < at["chinBottom"].y


def test_mouth_open_is_true_for_the_surprised_face_and_false_for_the_neutral_one(
        engine: LocalEngine) -> None:
    surprised = engine.detect_faces(load(f"{FACEAPI}/surprised.jpg"), Attributes.ALL).faces[0]
    neutral = engine.detect_faces(load(f"{FACEAPI}/neutral.jpg"), Attributes.ALL).faces[0]
    assert surprised.mouth_open is not None
    assert surprised.mouth_open.value is True
    assert neutral.mouth_open is not None
    assert neutral.mouth_open.value is False


def test_an_upright_face_has_a_small_roll_and_a_turned_copy_the_opposite_yaw(
        engine: LocalEngine) -> None:
    image = load(f"{DEEPFACE}/img5.jpg")
    face = engine.detect_faces(image, Attributes.DEFAULT).faces[0]
    mirrored = engine.detect_faces(from_pixels(image.pixels[:, ::-1]), Attributes.DEFAULT).faces[0]
    assert face.pose is not None
    assert mirrored.pose is not None
    assert abs(face.pose.roll) < 20.0
    assert abs(face.pose.yaw + mirrored.pose.yaw) < 8.0
    assert abs(face.pose.roll + mirrored.pose.roll) < 4.0


@pytest.mark.parametrize(("turns_clockwise", "expected"), [
    (1, OrientationCorrection.ROTATE_90),
    (2, OrientationCorrection.ROTATE_180),
    (3, OrientationCorrection.ROTATE_270),
])
def test_a_turned_photo_is_found_with_the_correction_that_was_needed(
        engine: LocalEngine, turns_clockwise: int, expected: OrientationCorrection) -> None:
    upright = load(f"{DEEPFACE}/img5.jpg")
    turned = from_pixels(np.rot90(upright.pixels, -turns_clockwise))
    detection = engine.detect_faces(turned, Attributes.DEFAULT)
    assert detection.orientation_correction == expected
    assert len(detection.faces) == 1
    # Boxes refer to the corrected (upright) image: the same box as the upright photo.
    box = detection.faces[0].bounding_box
    reference = engine.detect_faces(upright, Attributes.DEFAULT).faces[0].bounding_box
    assert box.left == pytest.approx(reference.left, abs=0.03)
    assert box.top == pytest.approx(reference.top, abs=0.03)


def test_without_orientation_search_a_sideways_photo_gives_no_face() -> None:
    engine = LocalEngine(SETTINGS.with_overrides(orientation_search=False))
    sideways = from_pixels(np.rot90(load(f"{DEEPFACE}/img5.jpg").pixels, -1))
    detection = engine.detect_faces(sideways, Attributes.DEFAULT)
    assert detection.faces == ()
    assert detection.orientation_correction is None


@pytest.mark.parametrize("relative", [f"{FACEAPI}/amy/amy1.png", f"{FACEAPI}/amy/amy2.png",
                                      f"{FACEAPI}/sheldon/sheldon1.png"])
def test_grayscale_png_face_crops_are_detected_and_embedded(engine: LocalEngine,
                                                            relative: str) -> None:
    with Image.open(FACES / relative) as img:
        assert img.mode == "L"
    detection, embedded = engine.embed_faces(load(relative))
    assert len(detection.faces) == 1
    assert len(embedded[0].embedding) == 128


def test_a_group_photo_gives_several_faces(engine: LocalEngine) -> None:
    detection = engine.detect_faces(load(f"{FACEAPI}/bbt3.jpg"), Attributes.DEFAULT)
    assert len(detection.faces) >= 4


def test_a_large_photo_is_downscaled_for_detection_and_boxes_map_back() -> None:
    small_side = LocalEngine(SETTINGS.with_overrides(detect_max_side=400))
    image = load(f"{DEEPFACE}/img6.jpg")
    assert max(image.width, image.height) > 400
    full = LocalEngine(SETTINGS).detect_faces(image, Attributes.DEFAULT).faces[0]
    reduced = small_side.detect_faces(image, Attributes.DEFAULT).faces[0]

    def centre(box: BoundingBox) -> tuple[float, float]:
        return box.left + box.width / 2, box.top + box.height / 2

    # HOG boxes come in discrete sizes per pyramid level, so sizes differ more than centres.
    assert centre(reduced.bounding_box) == pytest.approx(centre(full.bounding_box), abs=0.03)
    assert reduced.width_px == pytest.approx(full.width_px, rel=0.3)


def test_similarity_is_strictly_decreasing_in_distance_and_stays_within_0_and_100() -> None:
    calibration = SimilarityMap.load()
    distances = np.linspace(0.0, 1.6, 401)
    values = [calibration.similarity(float(d)) for d in distances]
    assert all(0.0 <= v <= 100.0 for v in values)
    assert all(a > b for a, b in itertools.pairwise(values))
    assert calibration.similarity(0.45) == calibration.similarity(0.45)


def test_similarity_80_means_a_false_match_rate_of_one_in_a_thousand() -> None:
    calibration = SimilarityMap.load()
    assert calibration.fmr(calibration.distance_at(80.0)) == pytest.approx(1e-3, rel=0.01)
    assert calibration.fmr(calibration.distance_at(50.0)) == pytest.approx(1e-2, rel=0.01)


def test_the_shipped_calibration_meets_its_promises_on_the_measured_pairs() -> None:
    # 80 (Rekognition's default) holds FMR <= 1e-3 on the pairs actually counted, and
    # same-person pairs typically score in the 90s.
    document = json.loads(CALIBRATION_FILE.read_text(encoding="utf-8"))
    at = {row["similarity"]: row for row in document["similarity_meaning"]}
    assert at[80]["measured_fmr"] <= 1e-3
    assert not at[80]["extrapolated"]
    assert at[99]["extrapolated"]
    assert document["genuine_similarity"]["p50"] >= 90.0
    assert sorted(at) == [20, 40, *range(50, 100)]


def test_the_same_person_scores_higher_than_different_people(engine: LocalEngine) -> None:
    def descriptor(relative: str) -> tuple[float, ...]:
        return engine.embed_faces(load(relative))[1][0].embedding

    angelina_a = descriptor(f"{DEEPFACE}/img5.jpg")
    angelina_b = descriptor(f"{DEEPFACE}/img6.jpg")
    jennifer = descriptor(f"{DEEPFACE}/img12.jpg")
    amy = descriptor(f"{FACEAPI}/amy/amy1.png")
    same = engine.similarity(angelina_a, angelina_b)
    assert same > engine.similarity(angelina_a, jennifer)
    assert same > engine.similarity(angelina_b, amy)
    assert engine.similarity(angelina_a, angelina_a) > 99.0
    einstein = engine.similarity(descriptor(f"{EINSTEIN}.jpeg"), descriptor(f"{EINSTEIN}.webp"))
    assert einstein > 95.0


def test_compare_faces_splits_target_faces_by_the_threshold(engine: LocalEngine) -> None:
    comparison = engine.compare_faces(load(f"{DEEPFACE}/img5.jpg"),
                                      load(f"{DEEPFACE}/img6.jpg"), 80.0)
    assert len(comparison.face_matches) == 1
    assert comparison.face_matches[0].similarity >= 80.0
    assert comparison.unmatched_faces == ()
    other = engine.compare_faces(load(f"{DEEPFACE}/img5.jpg"),
                                 load(f"{DEEPFACE}/img12.jpg"), 80.0)
    assert other.face_matches == ()
    assert len(other.unmatched_faces) == 1


def test_compare_faces_matches_are_sorted_by_similarity(engine: LocalEngine) -> None:
    comparison = engine.compare_faces(load(f"{FACEAPI}/bbt3.jpg"),
                                      load(f"{FACEAPI}/bbt3.jpg"), 0.0)
    similarities = [m.similarity for m in comparison.face_matches]
    assert similarities == sorted(similarities, reverse=True)
    assert similarities[0] > 99.0


def test_compare_faces_without_a_source_face_raises_and_without_target_faces_matches_nothing(
        engine: LocalEngine) -> None:
    with pytest.raises(NoFaceInSource):
        engine.compare_faces(load("face-api.js/test/images/white.png"),
                             load(f"{DEEPFACE}/img5.jpg"), 80.0)
    comparison = engine.compare_faces(load(f"{DEEPFACE}/img5.jpg"),
                                      load("mtcnn/tests/images/no-faces.jpg"), 80.0)
    assert comparison.face_matches == ()
    assert comparison.unmatched_faces == ()
    with pytest.raises(InvalidParameter):
        engine.compare_faces(load(f"{DEEPFACE}/img5.jpg"), load(f"{DEEPFACE}/img5.jpg"), 101.0)
    with pytest.raises(InvalidParameter):
        engine.compare_faces(load(f"{DEEPFACE}/img5.jpg"), load(f"{DEEPFACE}/img5.jpg"),
                             float("nan"))


def test_capabilities_list_what_the_engine_does_not_compute(engine: LocalEngine) -> None:
    capabilities = engine.capabilities()
    for attribute in ("AgeRange", "Gender", "Emotions", "Smile", "Beard"):
        assert attribute in capabilities.unsupported
        assert attribute not in capabilities.attributes
    assert {"BoundingBox", "Landmarks", "Pose", "Quality", "EyesOpen", "MouthOpen"} <= set(
        capabilities.attributes)
    assert capabilities.detector == "hog"


def test_the_cnn_detector_finds_a_face_with_a_confidence_from_its_score() -> None:
    # The MMOD CNN is slow on a CPU (tens of seconds for a 500 px photo): a 150 px crop.
    cnn = LocalEngine(SETTINGS.with_overrides(detector="cnn", orientation_search=False))
    assert cnn.model_version.endswith("/cnn/align68/jitter1")
    assert cnn.template_version == LocalEngine(SETTINGS).template_version
    detection = cnn.detect_faces(load(f"{FACEAPI}/amy/amy1.png"), Attributes.DEFAULT)
    assert len(detection.faces) == 1
    assert 50.0 < detection.faces[0].confidence <= 100.0


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 500, 3), (500, 2, 3), (10, 10, 3), (4000, 3, 3)])
def test_tiny_or_degenerate_images_give_no_faces_instead_of_an_error(
        engine: LocalEngine, shape: tuple[int, int, int]) -> None:
    pixels = np.full(shape, 128, dtype=np.uint8)
    detection, embedded = engine.embed_faces(from_pixels(pixels))
    assert detection.faces == ()
    assert embedded == []
