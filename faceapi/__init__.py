"""faceapi: face analysis and identity verification under named policies."""

__version__ = "0.1.0"
