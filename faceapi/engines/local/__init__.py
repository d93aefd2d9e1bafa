"""The local engine: dlib models shipped in `face_recognition_models`."""

from faceapi.engines.local.engine import LocalEngine

__all__ = ["LocalEngine"]
