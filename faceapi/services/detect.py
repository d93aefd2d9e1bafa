"""Use case: detect faces in one image."""

from __future__ import annotations

from dataclasses import dataclass

from faceapi.config import Settings
from faceapi.domain.faces import Attributes, Detection
from faceapi.engines.base import FaceEngine
from faceapi.images import decode_image


@dataclass(frozen=True)
class DetectRequest:
    image: bytes
    attributes: Attributes


def detect(req: DetectRequest, *, engine: FaceEngine, settings: Settings) -> Detection:
    """Run intake, then the engine's detector."""
    image = decode_image(req.image, settings)
    return engine.detect_faces(image, req.attributes)
