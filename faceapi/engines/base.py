"""The engine port: what every face engine adapter offers.

Operations mirror Rekognition's face API. Collection operations (index, search, list,
delete) are added by the collections work as a second port in this module.
"""

from __future__ import annotations

from typing import Protocol

from faceapi.domain.faces import Attributes, Capabilities, Comparison, Detection, EmbeddedFace
from faceapi.domain.images import DecodedImage


class FaceEngine(Protocol):
    """Face analysis: detection with attributes, 1:1 comparison, descriptors."""

    @property
    def name(self) -> str:
        """Short engine name, e.g. `local` or `rekognition`."""
        ...

    @property
    def model_version(self) -> str:
        """Version of the models in use; recorded on collections and audit events."""
        ...

    def capabilities(self) -> Capabilities:
        """What this engine computes and what it does not."""
        ...

    def detect_faces(self, image: DecodedImage, attributes: Attributes) -> Detection:
        """Find every face; ALL adds landmarks, pose, quality, eyes/mouth open."""
        ...

    def compare_faces(self, source: DecodedImage, target: DecodedImage,
                      similarity_threshold: float) -> Comparison:
        """Compare the largest face of `source` with every face of `target`.

        Raises NoFaceInSource when the source has no face."""
        ...

    def embed_faces(self, image: DecodedImage) -> tuple[Detection, list[EmbeddedFace]]:
        """Detect faces with ALL attributes and compute each one's descriptor."""
        ...

    def similarity(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        """Calibrated similarity 0-100 between two descriptors of this engine."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Whether the engine can serve requests now, and why not."""
        ...
