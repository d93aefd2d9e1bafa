"""dlib's MMOD CNN face detector converted to ONNX (mmod_format, mmod_convert,
mmod_pyramid, mmod_runtime): the same boxes and scores as
`dlib.cnn_face_detection_model_v1`, cached like the ResNet, and safe on odd input.

The tolerance (corners within 1 px, scores within 1e-4) is loose against what
bench/mmod.py measured over the shared set's 135 images at upsample 0: identical corners,
scores within 3.8e-6 (bench/results/mmod.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dlib
import numpy as np
import pytest

from faceapi.adapters.engines.local import detection as det
from faceapi.adapters.engines.local.dlib_format import DlibFormatError
from faceapi.adapters.engines.local.engine import LocalEngine, onnx_mmod_detector
from faceapi.adapters.engines.local.mmod_format import read_detector
from faceapi.adapters.engines.local.mmod_pyramid import layout
from faceapi.adapters.engines.local.mmod_runtime import OnnxMmodDetector
from faceapi.adapters.engines.local.models import (
    CNN_FILE,
    RECOGNITION_FILE,
    load_models,
    models_dir,
)
from faceapi.adapters.engines.local.onnx_files import MMOD, RESNET, cached_name, file_sha256
from faceapi.adapters.images import decode_image
from faceapi.config import KNOWN_FORMATS, Settings

FACES = Path(__file__).resolve().parent.parent / "data" / "faces"
IMAGES = "face-api.js/examples/images"
# Small fixtures, where dlib's CNN takes 0.2-0.8 s each at upsample 0.
PARITY = (f"{IMAGES}/amy/amy1.png", f"{IMAGES}/amy/amy2.png", f"{IMAGES}/sheldon/sheldon1.png",
          "CompreFace/embedding-calculator/src/services/imgtools/test/files/einstein.png",
          "mtcnn/tests/images/no-faces.jpg", "face-api.js/test/images/white.png")
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(env="test", image_formats=KNOWN_FORMATS,
                    data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def onnx_cnn(settings: Settings) -> OnnxMmodDetector:
    return onnx_mmod_detector(settings, load_models("hog"))


@pytest.fixture(scope="module")
def dlib_cnn() -> Any:
    return dlib.cnn_face_detection_model_v1(str(models_dir() / CNN_FILE))


def pixels(name: str, settings: Settings) -> Any:
    return decode_image((FACES / name).read_bytes(), settings).pixels


def dlib_boxes(detector: Any, image: Any, upsample: int) -> list[tuple[float, ...]]:
    return [(float(d.rect.left()), float(d.rect.top()), float(d.rect.right()),
             float(d.rect.bottom()), float(d.confidence)) for d in detector(image, upsample)]


def assert_same(ours: list[tuple[float, ...]], theirs: list[tuple[float, ...]]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert max(abs(a[i] - b[i]) for i in range(4)) <= 1.0
        assert abs(a[4] - b[4]) <= SCORE_TOLERANCE


@pytest.mark.parametrize("name", PARITY)
def test_the_onnx_detector_gives_dlibs_boxes_and_scores(
        name: str, settings: Settings, onnx_cnn: OnnxMmodDetector, dlib_cnn: Any) -> None:
    image = pixels(name, settings)
    assert_same(onnx_cnn(image, 0), dlib_boxes(dlib_cnn, image, 0))


def test_the_fixtures_hold_faces_so_parity_is_not_vacuous(
        settings: Settings, onnx_cnn: OnnxMmodDetector) -> None:
    assert sum(len(onnx_cnn(pixels(n, settings), 0)) for n in PARITY) >= 4


def test_upsampling_once_gives_dlibs_boxes_too(
        settings: Settings, onnx_cnn: OnnxMmodDetector, dlib_cnn: Any) -> None:
    image = pixels(PARITY[0], settings)
    ours = onnx_cnn(image, 1)
    assert ours
    assert_same(ours, dlib_boxes(dlib_cnn, image, 1))


def test_the_pyramid_layout_follows_dlibs_rules() -> None:
    # 150 x 150: levels 150, 125, 104, 86, 71, 59, 49, 40, 33, 27, 22, 18, 15, 12, 10,
    # 8, 6, 5 (floor of 5/6 while at least 5 rows), 10 px apart, 11 px border.
    plan = layout(150, 150, down=6, padding=10, outer_padding=11)
    heights = [t.height for t in plan.tiles]
    assert heights[:4] == [150, 125, 104, 86]
    assert min(heights) >= 5
    assert plan.columns == 150 + 22
    assert plan.tiles[0].left == plan.tiles[0].top == 11
    assert plan.tiles[1].top == 11 + 150 + 10
    for a in plan.tiles:  # no two tiles overlap
        for b in plan.tiles:
            if a is not b:
                assert (a.right < b.left or b.right < a.left or a.bottom < b.top
                        or b.bottom < a.top)


def test_the_detector_file_is_read_with_dlibs_options() -> None:
    network = read_detector((models_dir() / CNN_FILE).read_bytes())
    (window,) = network.options.windows
    assert (window.width, window.height) == (80, 80)
    assert 0.3 < network.options.nms_iou < 0.4
    assert network.options.nms_covered == 1.0
    assert network.pyramid.mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert [layer.weights.shape for layer in network.layers if layer.weights is not None] == [
        (1, 45, 9, 9), (45, 45, 5, 5), (45, 45, 5, 5), (45, 32, 5, 5), (32, 32, 5, 5),
        (32, 16, 5, 5), (16, 3, 5, 5)]


def test_another_network_or_a_damaged_file_is_refused() -> None:
    with pytest.raises(DlibFormatError):
        read_detector((models_dir() / RECOGNITION_FILE).read_bytes()[:200_000])
    data = (models_dir() / CNN_FILE).read_bytes()
    with pytest.raises(DlibFormatError):
        read_detector(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="unread bytes"):
        read_detector(data + b"\x00")


def test_the_converted_detector_is_cached_under_its_own_name(settings: Settings) -> None:
    digest = file_sha256(models_dir() / CNN_FILE)
    cached = settings.data_dir / "models" / cached_name(digest, MMOD)
    onnx_mmod_detector(settings, load_models("hog"))
    assert cached.is_file()
    assert cached_name(digest, MMOD) != cached_name(digest, RESNET)
    assert cached.name.startswith("mmod_human_face_detector.")


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 4000, 3), (4000, 2, 3), (4, 4, 3),
                                   (5, 300, 3), (6, 6, 3)])
def test_tiny_and_extreme_images_give_no_face_and_no_error(
        onnx_cnn: OnnxMmodDetector, shape: tuple[int, ...]) -> None:
    noise = np.random.default_rng(5).integers(0, 255, shape, dtype=np.uint8)
    assert onnx_cnn(noise, 0) == []


def test_the_cnn_fallback_only_sees_a_bounded_copy_of_a_huge_image(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = LocalEngine(settings.with_overrides(detect_fallback=("cnn",)))
    assert engine.ready() == (True, "models loaded")  # the CNN's session too
    models: Any = engine._models
    seen: list[tuple[int, ...]] = []
    real = models.mmod

    class Spy:
        def __call__(self, image: Any, upsample: int = 0, threshold: float = 0.0) -> Any:
            seen.append((*image.shape[:2], upsample))
            return real(image, upsample, threshold)

    spied = dataclasses.replace(models, mmod=Spy())
    noise = np.random.default_rng(7).integers(0, 255, (4000, 6000, 3), dtype=np.uint8)
    found = det.find_faces(noise, spied, upsample=1, max_side=1600, orientation_search=True,
                           fallbacks=("cnn",))
    assert found.faces == ()
    assert seen
    assert all(max(h, w) * 2 ** up <= 2 * det.CNN_FALLBACK_MAX_SIDE
                        for h, w, up in seen)
    assert max(max(h, w) for h, w, _ in seen) <= det.CNN_FALLBACK_MAX_SIDE


def test_detector_cnn_runs_on_onnx_with_the_same_faces_as_dlibs_cnn(
        settings: Settings) -> None:
    image = pixels(PARITY[2], settings)
    on_onnx = LocalEngine(settings.with_overrides(detector="cnn", descriptor_runtime="onnx"))
    on_dlib = LocalEngine(settings.with_overrides(detector="cnn", descriptor_runtime="dlib"))
    onnx_models: Any = on_onnx._models
    dlib_models: Any = on_dlib._models
    assert onnx_models.mmod is not None
    assert dlib_models.mmod is None
    a = det.find_faces(image, onnx_models, upsample=1, max_side=1600, orientation_search=True)
    b = det.find_faces(image, dlib_models, upsample=1, max_side=1600, orientation_search=True)
    assert a.faces
    assert [(f.left, f.top, f.right, f.bottom) for f in a.faces] == [
        (f.left, f.top, f.right, f.bottom) for f in b.faces]
    assert [f.score for f in a.faces] == pytest.approx([f.score for f in b.faces], abs=1e-4)
