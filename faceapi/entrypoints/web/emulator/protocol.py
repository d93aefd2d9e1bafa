"""The AWS JSON 1.1 protocol as Rekognition speaks it: request framing, the error
shape, and the mapping from our error codes to Rekognition's exception names.

Kept free of Flask so the mapping can be read (and tested) on its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from faceapi.adapters.images import decode_base64_image
from faceapi.domain.errors import FaceApiError
from faceapi.domain.images import REKOGNITION_MAX_IMAGE_BYTES

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "RekognitionService."

# Rekognition's limit for images sent as bytes (the emulator also applies our intake).
MAX_IMAGE_BYTES = REKOGNITION_MAX_IMAGE_BYTES


@dataclass
class AwsError(Exception):
    """An error in Rekognition's shape: `{"__type": ..., "message": ...}` with a status.

    Rekognition answers every client error with HTTP 400 (authentication and
    throttling included) and service faults with 500; SDKs key on `__type`."""

    type: str
    message: str
    status: int = 400
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, str]:
        return {"__type": self.type, "message": self.message}


# Our stable error codes -> Rekognition exception names.
EXCEPTION_BY_CODE: dict[str, str] = {
    "image_too_large": "ImageTooLargeException",
    "image_too_many_pixels": "ImageTooLargeException",
    "request_too_large": "ImageTooLargeException",
    "unsupported_image_format": "InvalidImageFormatException",
    "invalid_image": "InvalidImageFormatException",
    "missing_image": "InvalidParameterException",
    "no_face_in_source": "InvalidParameterException",
    "invalid_parameter": "InvalidParameterException",
    "validation_error": "InvalidParameterException",
    # A 400 from werkzeug before the view: the body could not be read as JSON (the
    # nesting guard in entrypoints/web/api/deps.py), which Rekognition calls a serialization
    # error.
    "bad_request": "SerializationException",
    "consent_required": "InvalidParameterException",
    "engine_mismatch": "InvalidParameterException",
    "not_found": "ResourceNotFoundException",
    "collection_exists": "ResourceAlreadyExistsException",
    "conflict": "ResourceAlreadyExistsException",
    "unauthorized": "UnrecognizedClientException",
    # SigV4 refusals (faceapi/services/sigv4.py), named as AWS names them.
    "unrecognized_client": "UnrecognizedClientException",
    "invalid_signature": "InvalidSignatureException",
    "incomplete_signature": "IncompleteSignatureException",
    "missing_authentication_token": "MissingAuthenticationTokenException",
    "forbidden": "AccessDeniedException",
    "policy_not_bound": "AccessDeniedException",
    "liveness_unsupported": "AccessDeniedException",
    "engine_access_denied": "AccessDeniedException",
    "engine_throttled": "ThrottlingException",
    "engine_unavailable": "InternalServerError",
    # Our database or blob directory is down, full or read-only: Rekognition's own
    # service failure, which boto3 retries (after x-amz-retry-after), not a client error.
    "store_unavailable": "InternalServerError",
    "blob_store_unavailable": "InternalServerError",
}


def aws_error(code: str, message: str, retry_after: int | None = None) -> AwsError:
    """An error of our stable `code` as Rekognition would report it."""
    name = EXCEPTION_BY_CODE.get(code, "InvalidParameterException")
    status = 500 if name == "InternalServerError" else 400
    headers = {}
    if retry_after is not None:
        # botocore's standard retry mode reads this header (milliseconds).
        headers["x-amz-retry-after"] = str(retry_after * 1000)
    return AwsError(name, message, status, headers)


def aws_error_from(exc: FaceApiError) -> AwsError:
    """Our error as Rekognition would report it."""
    return aws_error(exc.code, exc.message, exc.retry_after)


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


def operation_from_target(target: str | None) -> str:
    """`RekognitionService.DetectFaces` -> `DetectFaces`."""
    if not target or not target.startswith(TARGET_PREFIX):
        raise AwsError("UnknownOperationException",
                       f"X-Amz-Target must be {TARGET_PREFIX}<Operation>")
    return target[len(TARGET_PREFIX):]


# --- request members -------------------------------------------------------------------

def require_str(body: Mapping[str, Any], name: str, *, pattern: str | None = None,
                max_len: int = 255) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise invalid(f"{name} is required and must be a string")
    if len(value) > max_len or (pattern is not None and not re.fullmatch(pattern, value)):
        raise invalid(f"{name} is not valid")
    return value


def optional_str(body: Mapping[str, Any], name: str, *, pattern: str | None = None,
                 max_len: int = 255) -> str | None:
    if body.get(name) is None:
        return None
    return require_str(body, name, pattern=pattern, max_len=max_len)


def optional_number(body: Mapping[str, Any], name: str, default: float, *,
                    low: float, high: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not low <= float(value) <= high:
        raise invalid(f"{name} must be a number between {low:g} and {high:g}")
    return float(value)


def optional_int(body: Mapping[str, Any], name: str, default: int | None, *,
                 low: int, high: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{name} must be an integer between {low} and {high}")
    return value


def image_bytes(body: Mapping[str, Any], name: str, limit: int) -> bytes:
    """The raw bytes of an `Image` member (base64 in JSON 1.1)."""
    image = body.get(name)
    if not isinstance(image, dict):
        raise invalid(f"{name} is required")
    if "S3Object" in image:
        # The emulator runs off AWS and has no S3 access; Rekognition reports an
        # unreadable object with this exception, so SDK code handles it the same way.
        raise AwsError("InvalidS3ObjectException",
                       "S3Object is not supported by the faceapi emulator; send Bytes")
    encoded = image.get("Bytes")
    if not isinstance(encoded, str) or not encoded:
        raise invalid(f"{name}.Bytes is required")
    try:
        # ImageTooLarge (before decoding) leaves as ImageTooLargeException (aws_error_from).
        return decode_base64_image(name, encoded, limit)
    except ValueError as exc:
        raise invalid(f"{name}.Bytes is not valid base64") from exc
