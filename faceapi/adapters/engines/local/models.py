"""Locating and loading the dlib model files, once per process.

The `.dat` files ship inside the `face_recognition_models` wheel. Importing that package
needs `pkg_resources`, which current setuptools no longer provides, so we only ask the
import system where the package lives and never import it.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlib

MODELS_PACKAGE = "face_recognition_models"
HOG = "hog"
CNN = "cnn"
SHAPE_68_FILE = "shape_predictor_68_face_landmarks.dat"
SHAPE_5_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CNN_FILE = "mmod_human_face_detector.dat"


class ModelsNotFound(RuntimeError):
    """The model package is not installed or a model file is missing."""


def models_dir() -> Path:
    """Folder holding the dlib `.dat` files of `face_recognition_models`."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelsNotFound(f"the Python package {MODELS_PACKAGE!r} is not installed")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models"
        if (candidate / RECOGNITION_FILE).is_file():
            return candidate
    raise ModelsNotFound(f"{RECOGNITION_FILE} not found in the {MODELS_PACKAGE!r} package")


@dataclass(frozen=True)
class Models:
    """Loaded dlib models. dlib objects are read-only after loading; one set serves
    every request of a process (and is shared by forked gunicorn workers)."""

    detector_kind: str
    hog: Any  # dlib.fhog_object_detector
    cnn: Any | None  # dlib.cnn_face_detection_model_v1, only for detector=cnn
    shape68: Any  # dlib.shape_predictor
    shape5: Any  # dlib.shape_predictor
    recognizer: Any  # dlib.face_recognition_model_v1
    directory: Path
    # The MMOD CNN on onnxruntime (mmod_runtime.OnnxMmodDetector), set by the engine when
    # FACEAPI_DETECTOR=cnn runs on onnx or the `cnn` hard-photo fallback is on; dlib's
    # `cnn` above stays the reference. Thread-safe (no lock needed).
    mmod: Any | None = None
    # The HOG scan split over the calling and the helper thread (hog_split.SplitHog), set
    # by the engine when FACEAPI_DETECT_THREADS=2; None scans on the calling thread only.
    split: Any | None = None
    # dlib documents its object detectors and dnn nets as unsafe for concurrent use of
    # one instance (they keep scratch buffers); gunicorn threads share these models, so
    # detector and network calls hold this lock. The shape predictors are read-only.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def version(self) -> str:
        return f"dlib-{dlib.__version__}/resnet_v1/{self.detector_kind}"

    @property
    def recognizer_version(self) -> str:
        """The descriptor network alone (no detector): what a template depends on."""
        return f"dlib-{dlib.__version__}/resnet_v1"


_cache: dict[tuple[str, str], Models] = {}
_lock = threading.Lock()


def load_models(detector_kind: str, directory: Path | None = None) -> Models:
    """Load (or reuse) the models for a detector kind; the 100 MB 68-point predictor
    and the ResNet are read from disk only once per process."""
    if detector_kind not in (HOG, CNN):
        raise ValueError(f"unknown detector {detector_kind!r}")
    folder = directory or models_dir()
    key = (str(folder), detector_kind)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        for name in (SHAPE_68_FILE, SHAPE_5_FILE, RECOGNITION_FILE):
            if not (folder / name).is_file():
                raise ModelsNotFound(f"model file missing: {folder / name}")
        # Reuse the heavy predictors when the other detector kind was loaded first.
        other = next((m for (d, _), m in _cache.items() if d == str(folder)), None)
        models = Models(
            detector_kind=detector_kind,
            hog=other.hog if other else dlib.get_frontal_face_detector(),
            cnn=(other.cnn if other and other.cnn is not None
                 else dlib.cnn_face_detection_model_v1(str(folder / CNN_FILE)))
            if detector_kind == CNN else None,
            shape68=other.shape68 if other else dlib.shape_predictor(str(folder / SHAPE_68_FILE)),
            shape5=other.shape5 if other else dlib.shape_predictor(str(folder / SHAPE_5_FILE)),
            recognizer=other.recognizer if other
            else dlib.face_recognition_model_v1(str(folder / RECOGNITION_FILE)),
            directory=folder,
            # Shared objects must share their lock too.
            lock=other.lock if other else threading.Lock(),
        )
        _cache[key] = models
        return models
