"""A Rekognition-compatible endpoint served by our own engine and store."""

from faceapi.entrypoints.web.emulator.views import EmulatorControl, blp, control, init_app

__all__ = ["EmulatorControl", "blp", "control", "init_app"]
