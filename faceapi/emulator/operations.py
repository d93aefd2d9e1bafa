"""Rekognition operations answered by our own engine and store.

Each handler takes the decoded JSON request and a context, and returns the JSON
response with Rekognition's member names. Responses are dumped with the same
marshmallow schemas as our REST API, so there is one mapping from our dataclasses to
Rekognition's names; tests validate every response against botocore's service model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from faceapi.api.schemas import CompareResponseSchema, DetectResponseSchema
from faceapi.config import Settings
from faceapi.domain.faces import Attributes
from faceapi.emulator import protocol as p
from faceapi.engines.base import FaceEngine
from faceapi.images import decode_image


@dataclass(frozen=True)
class OperationContext:
    settings: Settings
    engine: FaceEngine
    # Everything else a handler may need (store, search index, actor), by name, so
    # collection handlers can be added without widening this class for every caller.
    extra: Mapping[str, Any]


Handler = Callable[[Mapping[str, Any], OperationContext], dict[str, Any]]


def _limit(ctx: OperationContext) -> int:
    return min(ctx.settings.max_image_bytes, p.MAX_IMAGE_BYTES)


def detect_faces(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    """DetectFaces: any attribute other than DEFAULT asks for everything we compute;
    attributes the engine cannot compute stay absent, as Rekognition omits them too."""
    data = p.image_bytes(body, "Image", _limit(ctx))
    requested = body.get("Attributes", ["DEFAULT"])
    if not isinstance(requested, list) or not all(isinstance(a, str) for a in requested):
        raise p.invalid("Attributes must be a list of strings")
    attributes = Attributes.DEFAULT if set(requested) <= {"DEFAULT"} else Attributes.ALL
    detection = ctx.engine.detect_faces(decode_image(data, ctx.settings), attributes)
    dumped: dict[str, Any] = DetectResponseSchema().dump(detection)
    return dumped


def compare_faces(body: Mapping[str, Any], ctx: OperationContext) -> dict[str, Any]:
    """CompareFaces; SimilarityThreshold defaults to 80 as in Rekognition."""
    source = p.image_bytes(body, "SourceImage", _limit(ctx))
    target = p.image_bytes(body, "TargetImage", _limit(ctx))
    threshold = p.optional_number(body, "SimilarityThreshold", 80.0, low=0.0, high=100.0)
    _quality_filter(body)
    comparison = ctx.engine.compare_faces(decode_image(source, ctx.settings),
                                          decode_image(target, ctx.settings), threshold)
    dumped: dict[str, Any] = CompareResponseSchema().dump(comparison)
    return dumped


QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")


def _quality_filter(body: Mapping[str, Any], default: str = "NONE") -> str:
    value = body.get("QualityFilter", default)
    if value not in QUALITY_FILTERS:
        raise p.invalid(f"QualityFilter must be one of {', '.join(QUALITY_FILTERS)}")
    return str(value)


HANDLERS: dict[str, Handler] = {
    "DetectFaces": detect_faces,
    "CompareFaces": compare_faces,
}
