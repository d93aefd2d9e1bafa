"""LocalEngine: the FaceEngine port on dlib (HOG or MMOD detector, 68-point
landmarks, ResNet 128-d descriptor) with a calibrated Similarity."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import dlib
import numpy as np
import structlog

from faceapi.adapters.engines.local import attributes as attrs
from faceapi.adapters.engines.local.detection import (
    FoundFaces,
    Pixels,
    RawFace,
    downscale_factor,
    find_faces,
)
from faceapi.adapters.engines.local.hog_split import SplitHog
from faceapi.adapters.engines.local.mmod_runtime import OnnxMmodDetector
from faceapi.adapters.engines.local.models import (
    CNN,
    CNN_FILE,
    RECOGNITION_FILE,
    Models,
    load_models,
)
from faceapi.adapters.engines.local.onnx_files import MMOD, ensure_model
from faceapi.adapters.engines.local.onnx_runtime import OnnxDescriptor
from faceapi.adapters.engines.local.parallel import (
    PairRunner,
    core_idle,
    helper_capable,
    release_freed_memory,
    thread_models,
)
from faceapi.adapters.engines.local.similarity import (
    CALIBRATION_FILE,
    SCALE_DESCRIPTION,
    SimilarityMap,
)
from faceapi.config import Settings
from faceapi.domain.errors import EngineUnavailable, InvalidParameter, NoFaceInSource
from faceapi.domain.faces import (
    DETAIL_ATTRIBUTES,
    UNCARRIED_ATTRIBUTES,
    Attributes,
    BoundingBox,
    Capabilities,
    CompareFaceMatch,
    Comparison,
    Detection,
    EmbeddedFace,
    FaceDetail,
)
from faceapi.domain.images import DecodedImage

# Descriptor settings, chosen by bench/accuracy.py measurements (docs/accuracy.md):
# the face chip is aligned with the 68-point shape, and each descriptor is the mean of
# DESCRIPTOR_JITTERS randomly jittered chips (1 = no jitter).
DESCRIPTOR_ALIGNMENT = "68"
DESCRIPTOR_JITTERS = 1
CHIP_PADDING = 0.25
# dlib's compute_face_descriptor cuts a 150x150 chip (get_face_chip_details(shape, 150,
# padding)); dlib.get_face_chip cuts the very same one for the onnx runtime.
CHIP_SIZE = 150
MODELS_CACHE = "models"  # under the data directory: the converted ONNX file

log = structlog.get_logger(__name__)


def onnx_descriptor(settings: Settings, models: Models) -> OnnxDescriptor:
    """The ResNet on onnxruntime, converted once into data_dir/models (first start or
    `faceapi engine convert`). If that directory cannot be written (a read-only data
    volume), the model is converted in memory instead, at every start."""
    source = models.directory / RECOGNITION_FILE
    try:
        path = ensure_model(source, settings.data_dir / MODELS_CACHE)
    except OSError as exc:
        log.warning("onnx_model_cache_unwritable", directory=str(settings.data_dir / MODELS_CACHE),
                    error=type(exc).__name__)
        # Only here does the server process load the onnx package and convert itself.
        from faceapi.adapters.engines.local.onnx_convert import convert

        model, _ = convert(source)
        return OnnxDescriptor(model.SerializeToString(), threads=settings.descriptor_threads)
    return OnnxDescriptor(path, threads=settings.descriptor_threads)


def onnx_mmod_detector(settings: Settings, models: Models) -> OnnxMmodDetector:
    """dlib's MMOD CNN on onnxruntime, converted once into data_dir/models like the
    ResNet (in memory when that directory cannot be written)."""
    source = models.directory / CNN_FILE
    try:
        path = ensure_model(source, settings.data_dir / MODELS_CACHE, kind=MMOD)
    except OSError as exc:
        log.warning("onnx_model_cache_unwritable", directory=str(settings.data_dir / MODELS_CACHE),
                    error=type(exc).__name__)
        from faceapi.adapters.engines.local.mmod_convert import convert_detector

        model, _ = convert_detector(source)
        return OnnxMmodDetector(model.SerializeToString(), source,
                                threads=settings.descriptor_threads)
    return OnnxMmodDetector(path, source, threads=settings.descriptor_threads)


def uses_onnx_cnn(settings: Settings) -> bool:
    """Whether the MMOD CNN runs on onnxruntime: as the detector when the descriptor
    runtime is onnx (dlib's CNN otherwise, the reference), and always for the `cnn`
    hard-photo fallback (dlib's would take seconds to tens of seconds a photo)."""
    return ((settings.detector == CNN and settings.descriptor_runtime == "onnx")
            or "cnn" in settings.detect_fallbacks)


def split_hog(models: Models, pairs: PairRunner) -> SplitHog | None:
    """The HOG scan in two halves (hog_split.py), or None (one thread scans, as with
    FACEAPI_DETECT_THREADS=1) when its detector copies cannot be made: they are written
    to and read from a temporary file, which a read-only system without a writable
    temporary directory refuses. A speed-up never stops the engine from starting."""
    try:
        return SplitHog(models.hog, models.lock, pairs.helper, core_idle)
    except (OSError, RuntimeError, ValueError) as exc:  # HogSplitUnavailable, DlibFormatError
        log.warning("hog_split_unavailable", error=type(exc).__name__)
        return None


# Below this ratio of the smaller image's detection area to the larger's, a compare
# detects its images in turn, each on both cores, instead of one image a core (measured:
# bench.latency --compare --mixed, docs/engines.md).
IN_TURN_AREA_RATIO = 0.25


class LocalEngine:
    """Face detection, attributes and comparison with dlib, on this machine."""

    def __init__(self, settings: Settings, *, alignment: str = DESCRIPTOR_ALIGNMENT,
                 jitters: int | None = None) -> None:
        if alignment not in ("68", "5"):
            raise ValueError("alignment must be '68' or '5'")
        self._settings = settings
        models = load_models(settings.detector)
        if uses_onnx_cnn(settings):
            models = dataclasses.replace(models, mmod=onnx_mmod_detector(settings, models))
        # compare_faces detects its two images at once, and a single image's HOG scan is
        # split over the same helper thread (docs/engines.md, "Speed").
        self._pairs = PairRunner(settings.detect_threads if helper_capable(models) else 1)
        if self._pairs.enabled:
            models = dataclasses.replace(models, split=split_hog(models, self._pairs))
        self._models: Models = models
        self._alignment = alignment
        self._jitters = max(1, settings.descriptor_jitters if jitters is None else jitters)
        # Jittered descriptors average dlib's own random crops: only dlib computes those.
        self._onnx: OnnxDescriptor | None = None
        if settings.descriptor_runtime == "onnx" and self._jitters == 1:
            self._onnx = onnx_descriptor(settings, self._models)
        self._calibration: SimilarityMap | None = None
        self._calibration_problem = ""
        try:
            self._calibration = SimilarityMap.load(CALIBRATION_FILE)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            # Detection still works; readiness reports the problem and similarity refuses.
            self._calibration_problem = f"{CALIBRATION_FILE.name}: {type(exc).__name__}"

    @property
    def name(self) -> str:
        return "local"

    @property
    def model_version(self) -> str:
        # The same for both runtimes: they compute the same descriptors (docs/engines.md).
        return f"{self._models.version}/align{self._alignment}/jitter{self._jitters}"

    @property
    def template_version(self) -> str:
        # What a descriptor depends on: the network, the chip's alignment and the
        # jitter; not the detector, which only decides where the face is.
        return f"{self._models.recognizer_version}/align{self._alignment}/jitter{self._jitters}"

    @property
    def chip_format(self) -> str:
        """The kind of chip embed_chips takes: chips of another format (another size,
        padding or alignment) would give descriptors of no template version."""
        return f"dlib-chip{CHIP_SIZE}/pad{CHIP_PADDING}/align{self._alignment}"

    @property
    def descriptor_runtime(self) -> str:
        return "dlib" if self._onnx is None else "onnx"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            engine=self.name,
            model_version=self.model_version,
            detector=self._settings.detector,
            attributes=DETAIL_ATTRIBUTES,
            unsupported=UNCARRIED_ATTRIBUTES,
            similarity=SCALE_DESCRIPTION,
            notes=(
                "Landmark left/right are the image's left/right "
                "(eyeLeft is the subject's right eye).",
                "leftPupil/rightPupil are eye-contour centres; "
                "the 68-point model has no pupil point.",
                "OrientationCorrection: ROTATE_N means the input was turned N degrees clockwise; "
                "boxes refer to the corrected image.",
            ),
        )

    def ready(self) -> tuple[bool, str]:
        if self._calibration is None:
            return False, f"similarity calibration unusable ({self._calibration_problem})"
        if self._onnx is not None:
            try:
                # This worker's session (made on first use after the fork): a worker that
                # cannot run the descriptor is not ready.
                self._onnx.warm()
            except Exception as exc:  # onnxruntime raises its own exception types
                return False, f"onnx descriptor runtime unusable ({type(exc).__name__})"
        if self._models.mmod is not None:
            try:
                self._models.mmod.warm()
            except Exception as exc:  # onnxruntime raises its own exception types
                return False, f"onnx CNN detector unusable ({type(exc).__name__})"
        return True, "models loaded"

    # Detection -------------------------------------------------------------------

    def _find(self, image: DecodedImage, models: Models | None = None) -> FoundFaces:
        return find_faces(image.pixels, models or self._models, upsample=self._settings.upsample,
                          max_side=self._settings.detect_max_side,
                          orientation_search=self._settings.orientation_search,
                          adaptive=self._settings.detect_strategy == "adaptive",
                          fallbacks=self._settings.detect_fallbacks)

    @contextlib.contextmanager
    def _memory_returned_after(self, *images: DecodedImage) -> Iterator[None]:
        """Gives freed memory back to the system after work on an image larger than the
        detection size (parallel.release_freed_memory says why only then)."""
        try:
            yield
        finally:
            max_side = self._settings.detect_max_side
            if any(downscale_factor(i.pixels.shape, max_side) < 1.0 for i in images):
                release_freed_memory()

    def _detail(self, pixels: Pixels, face: RawFace, attributes: Attributes) -> FaceDetail:
        h, w = pixels.shape[:2]
        left, top = face.left / w, face.top / h
        box = BoundingBox(width=min(1.0, face.right / w) - left,
                          height=min(1.0, face.bottom / h) - top, left=left, top=top)
        full = attributes == Attributes.ALL
        names = tuple(attrs.LANDMARK_POINTS) if full else attrs.DEFAULT_LANDMARKS
        return FaceDetail(
            bounding_box=box,
            confidence=round(face.confidence, 4),
            landmarks=attrs.landmarks(face.points, w, h, names),
            pose=attrs.pose(face.points, w, h),
            quality=attrs.quality(pixels, face.left, face.top, face.right, face.bottom),
            eyes_open=attrs.eyes_open(face.points) if full else None,
            mouth_open=attrs.mouth_open(face.points) if full else None,
            width_px=round(face.width),
            height_px=round(face.height),
        )

    def detect_faces(self, image: DecodedImage, attributes: Attributes) -> Detection:
        with self._memory_returned_after(image):
            found = self._find(image)
            faces = tuple(self._detail(found.pixels, f, attributes) for f in found.faces)
            return Detection(faces=faces, orientation_correction=found.orientation_correction)

    # Descriptors and comparison --------------------------------------------------

    def _shape(self, pixels: Pixels, face: RawFace) -> Any:
        if self._alignment == "5":
            return self._models.shape5(pixels, face.dlib_rect())
        return face.shape68

    def descriptors(self, pixels: Pixels, faces: list[RawFace]) -> list[tuple[float, ...]]:
        """One descriptor per face, all faces of the image in one batch on onnx."""
        return self._descriptors_and_chips(pixels, faces)[0]

    def _descriptors_and_chips(self, pixels: Pixels, faces: list[RawFace]
                               ) -> tuple[list[tuple[float, ...]], Any]:
        if not faces:
            return [], np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
        shapes = [self._shape(pixels, f) for f in faces]
        # One chip per call, as compute_face_descriptor cuts it for a single face: cutting
        # several at once (get_face_chips) builds dlib's down-sampling pyramid over the
        # region around all of them, which moves the pyramid's pixel grid and changes
        # the chips of large faces (descriptor differences up to 4e-3 measured).
        chips = np.stack([np.asarray(dlib.get_face_chip(pixels, shape, CHIP_SIZE, CHIP_PADDING),
                                     dtype=np.uint8) for shape in shapes])
        if self._onnx is None:
            with self._models.lock:
                vectors = [self._models.recognizer.compute_face_descriptor(
                    pixels, shape, self._jitters, CHIP_PADDING) for shape in shapes]
            return [tuple(float(v) for v in vector) for vector in vectors], chips
        # float32 -> float, as dlib's matrix_cast<double> does.
        return [tuple(float(v) for v in row) for row in self._onnx.compute(chips)], chips

    def embed_chips(self, chips: Sequence[bytes]) -> list[tuple[float, ...]]:
        """Descriptors of kept chips (`chip_format`, 150x150 RGB bytes), as
        `embed_faces` computes them from the image (faceapi collections reindex)."""
        if not chips:
            return []
        side = CHIP_SIZE * CHIP_SIZE * 3
        if any(len(c) != side for c in chips):
            raise InvalidParameter(f"a face chip must be {CHIP_SIZE}x{CHIP_SIZE} RGB bytes")
        batch = np.frombuffer(b"".join(chips), dtype=np.uint8).reshape(
            len(chips), CHIP_SIZE, CHIP_SIZE, 3)
        if self._onnx is None:
            with self._models.lock:
                vectors = [self._models.recognizer.compute_face_descriptor(
                    np.ascontiguousarray(chip), self._jitters) for chip in batch]
            return [tuple(float(v) for v in vector) for vector in vectors]
        return [tuple(float(v) for v in row) for row in self._onnx.compute(batch)]

    def _embedded_all(self, pixels: Pixels, faces: list[RawFace]) -> list[EmbeddedFace]:
        vectors, chips = self._descriptors_and_chips(pixels, faces)
        return [EmbeddedFace(detail=self._detail(pixels, face, Attributes.ALL), embedding=vector,
                             chip=chip.tobytes())
                for face, vector, chip in zip(faces, vectors, chips, strict=True)]

    def _find_on_helper(self, image: DecodedImage) -> FoundFaces:
        # The helper thread scans with its own detector instance (parallel.py).
        return self._find(image, thread_models(self._models))

    def _source_side(self, image: DecodedImage) -> tuple[FoundFaces, EmbeddedFace]:
        """A compare's source: its faces, and the largest one embedded (only it is
        compared, so only it needs a descriptor)."""
        found = self._find(image)
        if not found.faces:
            raise NoFaceInSource("no face was found in the source image")
        largest = max(found.faces, key=lambda f: f.area)
        (probe,) = self._embedded_all(found.pixels, [largest])
        return found, probe

    def _embed_on_helper(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        return self._embed_found(self._find_on_helper(image))

    def embed_faces(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        with self._memory_returned_after(image):
            return self._embedded(image)

    def _embedded(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        # compare_faces gives memory back once, after both images: it calls this.
        return self._embed_found(self._find(image))

    def _embed_found(self, found: FoundFaces) -> tuple[Detection, list[EmbeddedFace]]:
        embedded = self._embedded_all(found.pixels, list(found.faces))
        detection = Detection(faces=tuple(e.detail for e in embedded),
                              orientation_correction=found.orientation_correction)
        return detection, embedded

    def similarity(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        if self._calibration is None:
            raise EngineUnavailable("the local engine's similarity calibration is missing")
        if len(a) != len(b) or not a:
            raise InvalidParameter("descriptors of different lengths cannot be compared")
        diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        distance = float(np.linalg.norm(diff))
        return self._calibration.similarity(distance)

    def fused_similarity(self, probe: tuple[float, ...],
                         templates: Sequence[tuple[float, ...]]) -> float:
        """The probe against the mean of the templates' unit descriptors, scaled back to
        their mean length (dlib's descriptors are close to unit length, and the
        calibration is on their raw distances). Measured against best-of on the shared
        set (bench/verify.py `templates`, docs/accuracy.md): with two enrolled images it
        halves the genuine losses at the same threshold. One template is returned as is,
        so a subject with one face scores exactly as before."""
        if not templates:
            raise InvalidParameter("a fused template needs at least one descriptor")
        if len(templates) == 1:
            return self.similarity(probe, templates[0])
        vectors = np.asarray(templates, dtype=np.float64)
        lengths = np.linalg.norm(vectors, axis=1)
        if not np.all(lengths > 0):
            raise InvalidParameter("a zero descriptor cannot be fused")
        mean = (vectors / lengths[:, None]).mean(axis=0)
        fused = mean / np.linalg.norm(mean) * float(lengths.mean())
        return self.similarity(probe, tuple(float(v) for v in fused))

    def _detection_area(self, image: DecodedImage) -> float:
        """Pixels the HOG scan covers: the image's, or its copy downscaled for detection."""
        height, width = image.pixels.shape[:2]
        scale = downscale_factor(image.pixels.shape, self._settings.detect_max_side)
        return float(height * width) * scale * scale

    def _in_turn(self, source: DecodedImage, target: DecodedImage) -> bool:
        """Whether a compare's two images are better detected one after the other, each
        scan split over both cores (hog_split.py), than side by side: when one image is
        much smaller, side by side leaves a core idle while the larger one's scan runs on
        the other alone (docs/engines.md, "Two images of very different sizes")."""
        if self._models.split is None:
            return False
        smaller, larger = sorted((self._detection_area(source), self._detection_area(target)))
        return smaller < IN_TURN_AREA_RATIO * larger

    def compare_faces(self, source: DecodedImage, target: DecodedImage,
                      similarity_threshold: float) -> Comparison:
        if not 0.0 <= similarity_threshold <= 100.0:  # NaN fails the comparison too
            raise InvalidParameter("similarity_threshold must be between 0 and 100")
        # The target is detected while the source is (when a helper thread is free), and
        # embedded there too; the source's face is embedded before waiting for it. So the
        # descriptors (onnxruntime releases the GIL) overlap the other image's work.
        with self._memory_returned_after(source, target):
            if self._in_turn(source, target):
                found, probe = self._source_side(source)
                target_detection, target_faces = self._embedded(target)
            else:
                (found, probe), target_embedded = self._pairs.pair(
                    self._source_side, self._embed_on_helper, source, target,
                    self._embedded)
                target_detection, target_faces = target_embedded()
        scored = [(self.similarity(probe.embedding, f.embedding), f.detail) for f in target_faces]
        matches = sorted((CompareFaceMatch(similarity=round(s, 4), face=d)
                          for s, d in scored if s >= similarity_threshold),
                         key=lambda m: m.similarity, reverse=True)
        unmatched = tuple(d for s, d in scored if s < similarity_threshold)
        return Comparison(
            source_face=probe.detail,
            face_matches=tuple(matches),
            unmatched_faces=unmatched,
            source_orientation_correction=found.orientation_correction,
            target_orientation_correction=target_detection.orientation_correction,
        )


def dlib_version() -> str:
    return str(dlib.__version__)
