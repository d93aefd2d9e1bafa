"""Build the configured engine adapter. Imports are lazy so dlib is loaded only when
the local engine is chosen and boto3 only when Rekognition is."""

from __future__ import annotations

from faceapi.config import Settings
from faceapi.services.ports import FaceEngine


def build_engine(settings: Settings) -> FaceEngine:
    if settings.engine == "local":
        from faceapi.adapters.engines.local import LocalEngine

        local: FaceEngine = LocalEngine(settings)
        return local
    if settings.engine == "rekognition":
        from faceapi.adapters.engines.rekognition import RekognitionEngine

        remote: FaceEngine = RekognitionEngine(settings)
        return remote
    raise ValueError(f"unknown engine {settings.engine!r}")
