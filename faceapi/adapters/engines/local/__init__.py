"""The local engine: dlib models shipped in `face_recognition_models`.

`LocalEngine` is imported on first use, so the pure parts of this package (the
similarity calibration) can be used and tested without loading dlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceapi.adapters.engines.local.engine import LocalEngine

__all__ = ["LocalEngine"]


def __getattr__(name: str) -> Any:
    if name == "LocalEngine":
        from faceapi.adapters.engines.local.engine import LocalEngine

        return LocalEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
