"""Use case: compare the largest face of a source image with every face of a target."""

from __future__ import annotations

from dataclasses import dataclass

from faceapi.config import Settings
from faceapi.domain.faces import Comparison
from faceapi.engines.base import FaceEngine
from faceapi.images import decode_image


@dataclass(frozen=True)
class CompareRequest:
    source: bytes
    target: bytes
    similarity_threshold: float


def compare(req: CompareRequest, *, engine: FaceEngine, settings: Settings) -> Comparison:
    """Intake both images (source first, so its errors are reported first), then compare."""
    source = decode_image(req.source, settings)
    target = decode_image(req.target, settings)
    return engine.compare_faces(source, target, req.similarity_threshold)
