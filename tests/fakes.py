"""Small fakes of our own ports for unit tests. Never shipped in the package."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from faceapi.domain.collections import embedding_from_bytes, embedding_to_bytes
from faceapi.domain.errors import InvalidImage, NoFaceInSource
from faceapi.domain.faces import (
    Attributes,
    BoundingBox,
    Capabilities,
    CompareFaceMatch,
    Comparison,
    Detection,
    EmbeddedFace,
    FaceDetail,
    Pose,
    Quality,
)
from faceapi.domain.images import DecodedImage


def face(left: float = 0.3, top: float = 0.2, size: float = 0.4, confidence: float = 99.0,
         *, yaw: float = 0.0, sharpness: float = 80.0, width_px: int = 200) -> FaceDetail:
    return FaceDetail(bounding_box=BoundingBox(width=size, height=size, left=left, top=top),
                      confidence=confidence, pose=Pose(roll=0.0, yaw=yaw, pitch=0.0),
                      quality=Quality(brightness=60.0, sharpness=sharpness),
                      width_px=width_px, height_px=width_px)


@dataclass
class ScriptedFace:
    detail: FaceDetail
    embedding: tuple[float, ...]


def unit_vector(seed: int, dims: int = 128) -> tuple[float, ...]:
    digest = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(dims // 32))
    raw = [b - 127.5 for b in digest[:dims]]
    norm = math.sqrt(sum(v * v for v in raw))
    return tuple(v / norm for v in raw)


@dataclass
class FakeEngine:
    """Returns scripted faces keyed by the image's SHA-256 and records calls."""

    faces_by_sha: dict[str, list[ScriptedFace]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    is_ready: bool = True
    # The template version: "fake-1" gives the scripted descriptors; any other version
    # gives them reversed (another model's descriptors, comparable only among
    # themselves). The detector part of model_version never changes a descriptor.
    template: str = "fake-1"
    detector: str = "scripted"

    @property
    def name(self) -> str:
        return "fake"

    @property
    def model_version(self) -> str:
        return "fake-1" if (self.template, self.detector) == ("fake-1", "scripted") \
            else f"{self.template}/{self.detector}"

    @property
    def template_version(self) -> str:
        return self.template

    @property
    def chip_format(self) -> str:
        return "fake-chip"

    def _descriptor(self, scripted: tuple[float, ...]) -> tuple[float, ...]:
        return scripted if self.template == "fake-1" else tuple(reversed(scripted))

    def embed_chips(self, chips: list[bytes] | tuple[bytes, ...]) -> list[tuple[float, ...]]:
        # A fake chip is the scripted descriptor's bytes: the model's input, not its output.
        self.calls.append(("embed_chips", str(len(chips))))
        return [self._descriptor(embedding_from_bytes(chip)) for chip in chips]

    def script(self, data: bytes, faces: list[ScriptedFace]) -> None:
        self.faces_by_sha[hashlib.sha256(data).hexdigest()] = faces

    def capabilities(self) -> Capabilities:
        return Capabilities(engine="fake", model_version="fake-1", detector="scripted",
                            attributes=("BoundingBox", "Confidence"),
                            unsupported=("AgeRange", "Gender", "Emotions"),
                            similarity="cosine * 100")

    def _faces(self, image: DecodedImage) -> list[ScriptedFace]:
        return self.faces_by_sha.get(image.sha256, [])

    def detect_faces(self, image: DecodedImage, attributes: Attributes) -> Detection:
        self.calls.append(("detect_faces", image.sha256))
        return Detection(faces=tuple(f.detail for f in self._faces(image)))

    def compare_faces(self, source: DecodedImage, target: DecodedImage,
                      similarity_threshold: float) -> Comparison:
        self.calls.append(("compare_faces", source.sha256))
        sources = self._faces(source)
        if not sources:
            raise NoFaceInSource("no face in the source image")
        probe = max(sources, key=lambda f: f.detail.bounding_box.width)
        matches, unmatched = [], []
        for candidate in self._faces(target):
            score = self.similarity(probe.embedding, candidate.embedding)
            if score >= similarity_threshold:
                matches.append(CompareFaceMatch(similarity=score, face=candidate.detail))
            else:
                unmatched.append(candidate.detail)
        matches.sort(key=lambda m: -m.similarity)
        return Comparison(source_face=probe.detail, face_matches=tuple(matches),
                          unmatched_faces=tuple(unmatched))

    def embed_faces(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        self.calls.append(("embed_faces", image.sha256))
        faces = self._faces(image)
        return (Detection(faces=tuple(f.detail for f in faces)),
                [EmbeddedFace(detail=f.detail, embedding=self._descriptor(f.embedding),
                              chip=embedding_to_bytes(f.embedding)) for f in faces])

    def similarity(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return max(0.0, min(100.0, dot * 100.0))

    def fused_similarity(self, probe: tuple[float, ...],
                         templates: Sequence[tuple[float, ...]]) -> float:
        """The probe against the normalised mean of the templates."""
        mean = [sum(column) / len(templates) for column in zip(*templates, strict=True)]
        length = math.sqrt(sum(x * x for x in mean)) or 1.0
        return self.similarity(probe, tuple(x / length for x in mean))

    def ready(self) -> tuple[bool, str]:
        return (self.is_ready, "scripted" if self.is_ready else "fake engine switched off")


@dataclass
class FakeClock:
    current: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@dataclass
class FakeBlobStore:
    """The BlobStore port in a dict; `fail_puts` makes every put raise (a full disk)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    fail_puts: bool = False

    def put(self, key: str, data: bytes) -> None:
        if self.fail_puts:
            raise OSError("fake blob store refuses writes")
        self.blobs[key] = data

    def get(self, key: str) -> bytes | None:
        return self.blobs.get(key)

    def exists(self, key: str) -> bool:
        return key in self.blobs

    def delete(self, key: str) -> bool:
        return self.blobs.pop(key, None) is not None

    def delete_prefix(self, prefix: str) -> int:
        gone = self.keys(prefix)
        for key in gone:
            del self.blobs[key]
        return len(gone)

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.blobs if k.startswith(prefix.rstrip("/") + "/"))


@dataclass
class FakeImageDecoder:
    """The ImageDecoder port without PIL: any bytes are a 64x48 grey PNG, except those
    starting with `refuse_prefix` (InvalidImage, like a truncated file)."""

    refuse_prefix: bytes = b"broken"
    decoded: list[str] = field(default_factory=list)

    def decode(self, data: bytes) -> DecodedImage:
        if data.startswith(self.refuse_prefix):
            raise InvalidImage("the image could not be decoded")
        digest = hashlib.sha256(data).hexdigest()
        self.decoded.append(digest)
        return DecodedImage(data=data, sha256=digest, format="PNG",
                            pixels=np.full((48, 64, 3), 128, dtype=np.uint8))
