"""Our own exception types. Each has a stable snake_case code; the API maps codes to
HTTP statuses in exactly one place (api/errors.py)."""

from __future__ import annotations

from typing import Any


class FaceApiError(Exception):
    """Base of every error we raise on purpose. `code` is stable and documented."""

    code = "faceapi_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after


# Image intake
class ImageTooLarge(FaceApiError):
    code = "image_too_large"


class ImageTooManyPixels(FaceApiError):
    code = "image_too_many_pixels"


class UnsupportedImageFormat(FaceApiError):
    code = "unsupported_image_format"


class InvalidImage(FaceApiError):
    code = "invalid_image"


class MissingImage(FaceApiError):
    code = "missing_image"


# Face analysis
class NoFaceInSource(FaceApiError):
    code = "no_face_in_source"


class InvalidParameter(FaceApiError):
    code = "invalid_parameter"


# Resources
class NotFound(FaceApiError):
    code = "not_found"


class Conflict(FaceApiError):
    code = "conflict"


# Engine availability
class EngineUnavailable(FaceApiError):
    code = "engine_unavailable"


class EngineThrottled(FaceApiError):
    code = "engine_throttled"


class EngineAccessDenied(FaceApiError):
    code = "engine_access_denied"


class StoreUnavailable(FaceApiError):
    code = "store_unavailable"


class BlobStoreUnavailable(FaceApiError):
    """The blob store (review evidence, face crops) cannot take a write or give back a
    file: disk full, read-only, unreadable. The change that needed it is refused whole."""

    code = "blob_store_unavailable"


# Idempotency-Key (services/idempotency.py, docs/api.md "Idempotent requests")
class InvalidIdempotencyKey(FaceApiError):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(FaceApiError):
    code = "idempotency_key_reused"


class IdempotencyInProgress(FaceApiError):
    code = "idempotency_in_progress"


class IdempotencyResponseUnavailable(FaceApiError):
    code = "idempotency_response_unavailable"
